-- The engine's state. Times are ISO 8601 UTC text ('2026-07-01T06:00:00Z'), which sorts as time.
-- Invariants the database itself enforces: one current (scheduled, active or paused) enrollment
-- per campaign and partner; one state row per (enrollment, step, run); one outbox row per
-- message id; one row per trigger occurrence; one row per event id.

CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS partners (
    id         TEXT PRIMARY KEY,
    data       TEXT NOT NULL,          -- the typed record as JSON (dates as ISO text)
    hash       TEXT NOT NULL,          -- of data: which records an import changed
    updated_at TEXT NOT NULL,
    removed_at TEXT,                   -- gone from the source since then
    revision   INTEGER NOT NULL DEFAULT 0,  -- the import that last added, changed or removed it
    sort_key   TEXT                    -- dsl.ids.natural_key(id): partner_columns is ordered by it
);
CREATE INDEX IF NOT EXISTS partners_revision ON partners (revision, id);

CREATE TABLE IF NOT EXISTS campaigns (
    id            TEXT PRIMARY KEY,
    number        INTEGER NOT NULL UNIQUE,   -- sequential, never reused
    name          TEXT,
    first_seen_at TEXT NOT NULL,
    active        INTEGER NOT NULL,          -- as the last tick saw it
    active_since  TEXT,                      -- the tick that last saw it switch on
    draft_hash    TEXT,                      -- returned to draft (engine draft) as the file was then
    priority      INTEGER NOT NULL DEFAULT 0 -- as the last tick saw it (its enrollments carry it too)
);

CREATE TABLE IF NOT EXISTS locks (
    campaign  TEXT PRIMARY KEY,              -- a one-shot campaign that started sending
    locked_at TEXT NOT NULL,
    content   TEXT NOT NULL                  -- its steps and audience as they were (JSON)
);

CREATE TABLE IF NOT EXISTS firings (
    campaign   TEXT NOT NULL,
    occurrence TEXT NOT NULL,                -- 'cron:<time>' or 'at:<time as written>'
    at         TEXT NOT NULL,                -- when it fired (logical)
    enrolled   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (campaign, occurrence)
);

CREATE TABLE IF NOT EXISTS enrollments (
    id          INTEGER PRIMARY KEY,
    campaign    TEXT NOT NULL,
    partner     TEXT NOT NULL,
    number      INTEGER NOT NULL,
    status      TEXT NOT NULL,               -- scheduled | active | paused | finished | removed
    reason      TEXT,                        -- why it finished
    origin      TEXT NOT NULL,               -- trigger | manual | follow_up
    source      TEXT,                        -- the trigger kind, event id, user or response
    created_at  TEXT NOT NULL,
    started_at  TEXT NOT NULL,               -- the enrollment time (a scheduled start: its date)
    finished_at TEXT,
    after_step  TEXT,                        -- the last step it reached
    next_step   TEXT,                        -- the step it waits for (NULL: past the last one)
    due_at      TEXT,                        -- when next_step (or the end) is due
    paused_at   TEXT,
    version     INTEGER NOT NULL DEFAULT 0,
    waiting_since TEXT,                      -- at a wait-for since then (due_at: its at_most)
    priority    INTEGER NOT NULL DEFAULT 0,  -- the campaign's: of one instant's due steps, higher first
    held        TEXT,                        -- JSON: the policy that moved next_step's due time, and from when
    UNIQUE (campaign, partner, number)
);
CREATE UNIQUE INDEX IF NOT EXISTS enrollments_current ON enrollments (campaign, partner)
    WHERE status IN ('scheduled', 'active', 'paused');
DROP INDEX IF EXISTS enrollments_due;  -- (due_at): due steps now go in priority order within one instant
CREATE INDEX IF NOT EXISTS enrollments_due_order ON enrollments (due_at, priority DESC, campaign, id)
    WHERE status = 'active';
CREATE INDEX IF NOT EXISTS enrollments_scheduled ON enrollments (started_at) WHERE status = 'scheduled';
CREATE INDEX IF NOT EXISTS enrollments_partner ON enrollments (partner, campaign);
CREATE INDEX IF NOT EXISTS enrollments_campaign ON enrollments (campaign, status);
CREATE INDEX IF NOT EXISTS enrollments_finished ON enrollments (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS enrollments_waiting ON enrollments (campaign, id)
    WHERE waiting_since IS NOT NULL AND status = 'active';

CREATE TABLE IF NOT EXISTS step_runs (
    enrollment INTEGER NOT NULL,
    step       TEXT NOT NULL,
    run        INTEGER NOT NULL,
    status     TEXT NOT NULL,                -- executed | skipped | failed
    reason     TEXT,
    due_at     TEXT,
    at         TEXT NOT NULL,                -- when it was executed, skipped or failed
    detail     TEXT,                         -- JSON: message ids, the error of a failure
    PRIMARY KEY (enrollment, step, run)
);

CREATE TABLE IF NOT EXISTS outbox (
    id           TEXT PRIMARY KEY,           -- the message id: enrollment, step and run
    channel      TEXT NOT NULL,              -- email | sms | letter
    enrollment   INTEGER NOT NULL,
    campaign     TEXT NOT NULL,
    step         TEXT NOT NULL,
    partner      TEXT NOT NULL,
    at           TEXT NOT NULL,
    payload      TEXT NOT NULL,              -- JSON: the record the transport writes
    html         INTEGER NOT NULL DEFAULT 0, -- the body is HTML (its template is .html)
    status       TEXT NOT NULL DEFAULT 'queued',  -- queued | sent | failed
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_attempt TEXT,                       -- after a failed attempt: not before then
    last_error   TEXT,                       -- why the last attempt failed (cleared when sent)
    delivered_at TEXT,                       -- when the transport took it
    claimed_by   TEXT,                       -- the process handing it over now (engine.delivery)
    claimed_at   TEXT,                       -- since when (wall clock)
    language     TEXT,                       -- the payload's language and variant, for counting (stats)
    variant      TEXT
);
DROP INDEX IF EXISTS outbox_queued;
CREATE INDEX IF NOT EXISTS outbox_waiting ON outbox (status) WHERE status = 'queued';  -- in rowid order
CREATE INDEX IF NOT EXISTS outbox_partner ON outbox (partner, campaign, step);
-- a campaign's message counts by step, channel, language, variant and status (engine stats, the campaign page),
-- read from the index alone. (Its columns are copied from the payload when a message is queued: an index on
-- the payload's JSON would decode every message again whenever its status changes.)
CREATE INDEX IF NOT EXISTS outbox_tally ON outbox (campaign, step, channel, language, variant, status);
CREATE INDEX IF NOT EXISTS outbox_claimed ON outbox (claimed_by) WHERE claimed_by IS NOT NULL;

-- Messages a step batch recorded as sent to a local transport (the files) in its own transaction,
-- listed until they are in their files (engine.delivery): what a killed process left is written
-- by the next delivery.
CREATE TABLE IF NOT EXISTS handovers (
    id       INTEGER PRIMARY KEY,
    at       TEXT NOT NULL,                  -- the tick's time (the messages' delivered_at)
    messages TEXT NOT NULL                   -- JSON: the outbox ids
);

CREATE TABLE IF NOT EXISTS activities (
    id           TEXT PRIMARY KEY,
    enrollment   INTEGER NOT NULL,
    campaign     TEXT NOT NULL,
    step         TEXT NOT NULL,
    partner      TEXT NOT NULL,
    kind         TEXT NOT NULL,
    assignee     TEXT,
    subject      TEXT,
    responses    TEXT NOT NULL,              -- JSON: {key: {result, follow_up}}
    status       TEXT NOT NULL,              -- open | completed
    created_at   TEXT NOT NULL,
    response     TEXT,
    result       TEXT,
    responded_at TEXT,
    answers      TEXT,                       -- JSON: survey question id → answer
    duration     INTEGER                     -- seconds of contact
);
CREATE INDEX IF NOT EXISTS activities_partner ON activities (partner, campaign, step);

CREATE TABLE IF NOT EXISTS responses (
    seq          INTEGER PRIMARY KEY,
    target       TEXT NOT NULL UNIQUE,       -- the activity or message responded to: once
    kind         TEXT NOT NULL,              -- activity | mailing
    enrollment   INTEGER NOT NULL,
    campaign     TEXT NOT NULL,
    step         TEXT NOT NULL,
    partner      TEXT NOT NULL,
    response     TEXT NOT NULL,
    result       TEXT NOT NULL,
    follow_up    TEXT,                       -- the campaign it started, if any
    follow_up_enrollment INTEGER,
    answers      TEXT NOT NULL,              -- JSON: survey question id → answer
    duration     INTEGER,                    -- seconds of contact
    at           TEXT NOT NULL,
    user         TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS responses_enrollment ON responses (enrollment, step, at);

CREATE TABLE IF NOT EXISTS members (
    campaign TEXT NOT NULL,                  -- a campaign's manual target group
    partner  TEXT NOT NULL,
    origin   TEXT NOT NULL,                  -- group:<name> | campaign:<id> | filter | partner
    added_at TEXT NOT NULL,
    added_by TEXT NOT NULL,
    PRIMARY KEY (campaign, partner)
);

CREATE TABLE IF NOT EXISTS popups (
    id         TEXT PRIMARY KEY,
    enrollment INTEGER NOT NULL,
    campaign   TEXT NOT NULL,
    step       TEXT NOT NULL,
    partner    TEXT NOT NULL,
    pages      TEXT NOT NULL,                -- JSON list
    title      TEXT NOT NULL,
    body       TEXT NOT NULL,
    language   TEXT,
    created_at TEXT NOT NULL,
    read_at    TEXT,
    variant    TEXT                          -- the step's variant this partner was shown
);
CREATE INDEX IF NOT EXISTS popups_partner ON popups (partner);

CREATE TABLE IF NOT EXISTS events (
    id          TEXT PRIMARY KEY,
    type        TEXT NOT NULL,
    at          TEXT NOT NULL,
    partner     TEXT NOT NULL,
    data        TEXT NOT NULL,               -- JSON object
    message     TEXT,
    campaign    TEXT,
    step        TEXT,
    imported_at TEXT NOT NULL,
    processed   INTEGER NOT NULL DEFAULT 0   -- seen by the tick that covered its time
);
CREATE INDEX IF NOT EXISTS events_pending ON events (at) WHERE processed = 0;
CREATE INDEX IF NOT EXISTS events_partner ON events (partner, campaign, step, type);

CREATE TABLE IF NOT EXISTS consent (
    seq     INTEGER PRIMARY KEY,
    partner TEXT NOT NULL,
    channel TEXT NOT NULL,
    granted INTEGER NOT NULL,
    at      TEXT NOT NULL,
    source  TEXT NOT NULL                    -- the event that said so
);
CREATE INDEX IF NOT EXISTS consent_partner ON consent (partner, channel, at);

CREATE TABLE IF NOT EXISTS undeliverable (
    address TEXT PRIMARY KEY,                -- an email address (lower case) that hard-bounced
    at      TEXT NOT NULL,
    source  TEXT NOT NULL                    -- the bounce event
);

CREATE TABLE IF NOT EXISTS alerts (
    seq        INTEGER PRIMARY KEY,
    campaign   TEXT NOT NULL,
    raised_at  TEXT NOT NULL,
    pct        REAL NOT NULL,                -- In-Campaign % when it was raised
    minimum    REAL NOT NULL,
    cleared_at TEXT,
    cleared_pct REAL
);
CREATE UNIQUE INDEX IF NOT EXISTS alerts_open ON alerts (campaign) WHERE cleared_at IS NULL;

CREATE TABLE IF NOT EXISTS log (
    seq      INTEGER PRIMARY KEY,
    at       TEXT NOT NULL,                  -- logical time of the action
    user     TEXT NOT NULL,                  -- 'engine' for what a tick did
    action   TEXT NOT NULL,
    campaign TEXT,
    partner  TEXT,
    detail   TEXT NOT NULL                   -- JSON
);
CREATE INDEX IF NOT EXISTS log_campaign ON log (campaign, seq);

CREATE TABLE IF NOT EXISTS api_keys (
    id           TEXT PRIMARY KEY,           -- the key's public part: ek_<id>_<secret>
    user         TEXT NOT NULL,              -- who the key acts as (engine.yaml's users), with their roles
    salt         TEXT NOT NULL,              -- hex, random per key
    hash         TEXT NOT NULL,              -- hex scrypt of the secret with the salt: never the key itself
    created_at   TEXT NOT NULL,
    last_used_at TEXT,                       -- recorded at most about once a minute
    revoked_at   TEXT                        -- refused from then on
);

CREATE TABLE IF NOT EXISTS sends (           -- executed message steps, as frequency caps count them
    partner    TEXT NOT NULL,
    channel    TEXT NOT NULL,                -- email | sms | popup | letter
    due_at     TEXT NOT NULL,                -- the step's due time: caps count these
    enrollment INTEGER NOT NULL,
    step       TEXT NOT NULL,
    run        INTEGER NOT NULL,
    PRIMARY KEY (partner, channel, due_at, enrollment, step, run)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS conversions (     -- enrollments that reached their campaign's goal
    enrollment INTEGER PRIMARY KEY,
    campaign   TEXT NOT NULL,
    partner    TEXT NOT NULL,
    at         TEXT NOT NULL,                -- the tick that saw `when` hold, or the event's time
    source     TEXT NOT NULL                 -- 'when', or 'event:' and the event's id
);
CREATE INDEX IF NOT EXISTS conversions_campaign ON conversions (campaign, at);
