"""ESP webhooks → engine events (engine.web.esp), against the providers' published samples
(tests/web/fixtures, see its README): a sample made ours, by putting our Message-ID or custom
argument into a copy, gives the engine's events; unmodified, nothing (it is not ours)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.channels.smtp import message_id
from engine.clock import UTC
from engine.events import read_events
from engine.web.esp import MESSAGE_HEADER, EspError, Translation, sendgrid, ses

pytestmark = pytest.mark.no_store  # pure functions: no store
FIXTURES = Path(__file__).parent / "fixtures"
MESSAGE, OTHER = "welcome:p-1:3:intro:1", "renewal:p-2:1:remind:1"  # campaign:partner:n:step:run
HEADER = message_id(MESSAGE, "news@example.com")  # the Message-ID our SMTP transport writes
SNS_ID = "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324"  # the MessageId of the published SNS Notification
COMPLAINT, UNSUBSCRIBE = {"channel": "email", "reason": "complaint"}, {"channel": "email", "reason": "unsubscribe"}


def load(name: str):
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


SENDGRID, BLOCKED, SNS = load("sendgrid_events.json"), load("sendgrid_blocked.json"), load("sns_envelopes.json")
NOTIFICATIONS, SES_EVENTS = load("ses_notifications.json"), load("ses_events.json")


def event(type_: str, id_: str, data: dict | None = None, at: str = "2017-12-15T00:59:29Z", message: str = MESSAGE):
    """An engine event, as a translation should give it."""
    made = {"type": type_, "at": at, "partner": message.split(":")[1], "message": message, "id": id_}
    return made if data is None else {**made, "data": data}


def published(kind: str) -> dict:
    """A copy of SendGrid's sample event of ``kind``."""
    return copy.deepcopy(next(e for e in SENDGRID if e["event"] == kind))


def sample(kind: str, **changes) -> dict:
    """SendGrid's sample event of ``kind``, about our message (its smtp-id), with ``changes``."""
    return {**published(kind), "smtp-id": HEADER, **changes}


def ours_ses(notification: dict, header: str = HEADER, tag: bool = False) -> dict:
    """A copy of an SES notification whose Message-ID (common headers and header list) is
    ``header``; with ``tag``, it also has our X-Campaign-Message header."""
    notification = copy.deepcopy(notification)
    mail = notification["mail"]
    mail.setdefault("commonHeaders", {})["messageId"] = header
    for entry in mail.get("headers", []):
        if entry["name"].lower() == "message-id":
            entry["value"] = header
    if tag:
        mail.setdefault("headers", []).append({"name": MESSAGE_HEADER, "value": MESSAGE})
    return notification


def envelope(notification, sns_id: str = SNS_ID) -> dict:
    """The published SNS Notification sample, carrying ``notification``."""
    return {**SNS["Notification"], "Message": json.dumps(notification), "MessageId": sns_id}


def importable(events: tuple[dict, ...]) -> bool:
    """The engine's events-file reader takes every event (a repeated id is the same event, once)."""
    parsed = read_events("esp.jsonl", "".join(json.dumps(e) + "\n" for e in events), UTC)
    return not parsed.diagnostics and len(parsed.events) + parsed.duplicates == len(events)


# --- SendGrid ----------------------------------------------------------------------------------


def test_published_sendgrid_samples_are_not_ours():
    assert sendgrid(SENDGRID) == Translation((), 11)
    assert sendgrid(BLOCKED) == Translation((), 1)


def test_sendgrid_every_kind():
    result = sendgrid([sample(e["event"]) for e in SENDGRID])
    assert result == Translation((
        event("opened", "sendgrid:FOTFFO0ecsBE-zxFXfs6WA=="),
        event("clicked", "sendgrid:kCAi1KttyQdEKHhdC-nuEA==", {"url": "http://www.sendgrid.com/"}),
        event("bounced", "sendgrid:6g4ZI7SA-xmRDv57GoPIPw==", {"kind": "hard", "reason": "500 unknown recipient"}),
        event("bounced", "sendgrid:zmzJhfJgAfUSOW80yEbPyw==",
              {"kind": "soft", "reason": "dropped by SendGrid: Bounced Address"}),
        event("unsubscribed", "sendgrid:37nvH5QBz858KGVYCM4uOA==", COMPLAINT),
        event("unsubscribed", "sendgrid:zz_BjPgU_5pS-J8vlfB1sg==", UNSUBSCRIBE),
        event("unsubscribed", "sendgrid:ahSCB7xYcXFb-hEaawsPRw==", UNSUBSCRIBE),
    ), 4)  # processed, deferred, delivered, group_resubscribe
    assert importable(result.events)


def test_sendgrid_blocked_is_a_soft_bounce():
    blocked = {**BLOCKED[0], "smtp-id": HEADER}
    assert sendgrid([blocked]).events[0]["data"] == {"kind": "soft", "reason": "500 unknown recipient"}
    assert sendgrid([{**blocked, "event": "blocked", "type": None}]).events[0]["data"]["kind"] == "soft"


@pytest.mark.parametrize("kind", ["processed", "deferred", "delivered", "group_resubscribe", "machine_open", ""])
def test_sendgrid_kinds_we_ignore(kind):
    assert sendgrid([sample("open", event=kind)]) == Translation((), 1)


def test_sendgrid_custom_argument_comes_first():
    assert sendgrid([{**published("open"), "engine_message": MESSAGE}]).events[0]["message"] == MESSAGE
    other = {"smtp-id": message_id(OTHER, "news@example.com")}
    assert sendgrid([sample("open", engine_message=MESSAGE, **other)]).events[0]["message"] == MESSAGE
    assert sendgrid([sample("open", engine_message="no engine id", **other)]).events == (
        event("opened", "sendgrid:FOTFFO0ecsBE-zxFXfs6WA==", message=OTHER),)


@pytest.mark.parametrize("smtp_id", [HEADER.strip("<>"), f"  {HEADER} "])
def test_sendgrid_message_id_with_or_without_brackets(smtp_id):
    assert sendgrid([sample("open", **{"smtp-id": smtp_id})]).events[0]["message"] == MESSAGE


@pytest.mark.parametrize("engine_message", ["hello", "a:b:c", "c:p:x:s:1", "c:bad\npartner:1:s:1", "c: p:1:s:1", ""])
def test_sendgrid_a_custom_argument_naming_no_engine_message_is_not_ours(engine_message):
    assert sendgrid([{**published("click"), "engine_message": engine_message}]) == Translation((), 1)


def test_sendgrid_ids_are_stable():
    assert sendgrid([sample("click")]) == sendgrid([sample("click")])  # a delivery twice: the same ids
    no_id = sample("open", sg_event_id=None)
    first = sendgrid([no_id]).events[0]["id"]
    assert first.startswith("sendgrid:sha256:")
    assert sendgrid([dict(reversed(no_id.items()))]).events[0]["id"] == first  # key order does not count
    assert sendgrid([{**no_id, "timestamp": 1513299570}]).events[0]["id"] != first


def test_sendgrid_times_and_provider_text():
    result = sendgrid([sample("open", timestamp=1782896400.75),
                       sample("click", url="http://x.example/\x00\n" + "a" * 5000),
                       sample("bounce", reason="550\r\nno such user \ud800")])
    assert result.events[0]["at"] == "2026-07-01T09:00:00Z"
    url = result.events[1]["data"]["url"]
    assert url.startswith("http://x.example/\ufffd\ufffdaaa") and len(url) == 2000
    assert result.events[2]["data"]["reason"] == "550\ufffd\ufffdno such user \ufffd"
    assert importable(result.events)


@pytest.mark.parametrize("payload, problem", [
    ({"event": "open"}, "a SendGrid webhook body is a list of events, got an object"),
    (["open"], "event 1 must be an object, got a string"),
    ([{"timestamp": 1}], "event 1: event is missing"),
    ([{"event": 5, "timestamp": 1}], "event 1: event must be a string, got a number"),
    ([{"event": "open"}], "event 1: timestamp is missing"),
    ([{"event": "open", "timestamp": "1513299569"}], "event 1: timestamp must be a number (unix seconds), got a string"),
    ([{"event": "open", "timestamp": True}], "event 1: timestamp must be a number (unix seconds), got true"),
    ([{"event": "open", "timestamp": 1e300}], "event 1: timestamp is out of range"),
    ([{"event": "open", "timestamp": 10**30}], "event 1: timestamp is out of range"),
    ([{"event": "open", "timestamp": -62135596801}], "event 1: timestamp is out of range"),
    ([{"event": "open", "timestamp": 9e9}], "event 1: timestamp is out of range (dates must be"),
    ([{"event": "click", "timestamp": 1}], "event 1: url is missing"),
    ([{"event": "click", "timestamp": 1, "url": ["x"]}], "event 1: url must be a string, got a list"),
    ([{"event": "open", "timestamp": 1, "smtp-id": 7}], "event 1: smtp-id must be a string, got a number"),
    ([{"event": "bounce", "timestamp": 1, "reason": {}}], "event 1: reason must be a string, got an object"),
    ([{"event": "open", "timestamp": 1, "engine_message": MESSAGE, "sg_event_id": "a\nb"}],
     "event 1: the event id made of sg_event_id must be printable text on one line"),
])
def test_sendgrid_malformed(payload, problem):
    with pytest.raises(EspError) as raised:
        sendgrid([sample("open"), *payload] if isinstance(payload, list) else payload)  # event 0 is good
    assert str(raised.value).startswith(problem) and "\n" not in str(raised.value)


# --- Amazon SES through SNS --------------------------------------------------------------------


@pytest.mark.parametrize("notification", [*NOTIFICATIONS.values(), *SES_EVENTS.values()],
                         ids=[*NOTIFICATIONS, *SES_EVENTS])
def test_published_ses_samples_are_not_ours(notification):
    result = ses(envelope(notification))
    assert result.events == () and result.ignored >= 1 and result.subscription is None


def test_published_sns_envelopes():
    confirmation = SNS["SubscriptionConfirmation"]
    assert ses(confirmation) == Translation((), 0, {
        "TopicArn": "arn:aws:sns:us-west-2:123456789012:MyTopic", "SubscribeURL": confirmation["SubscribeURL"],
        "Token": confirmation["Token"], "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b"})
    assert ses(SNS["UnsubscribeConfirmation"]) == Translation((), 1)
    with pytest.raises(EspError, match=r"^SNS message: Message is not JSON \(Expecting value at line 1 column 1\)$"):
        ses(SNS["Notification"])  # "Hello world!": as published, malformed for an SES endpoint


@pytest.mark.parametrize("bounce_type, kind", [("Permanent", "hard"), ("Transient", "soft"), ("Undetermined", "soft")])
def test_ses_bounce_one_event_per_recipient(bounce_type, kind):
    with_dsn, without_dsn = ours_ses(NOTIFICATIONS["bounce_with_dsn"]), ours_ses(NOTIFICATIONS["bounce_without_dsn"])
    with_dsn["bounce"]["bounceType"] = without_dsn["bounce"]["bounceType"] = bounce_type
    at, reason = "2016-01-27T14:59:38Z", f"{bounce_type} General"
    assert ses(envelope(with_dsn)) == Translation((event("bounced", f"ses:{SNS_ID}:jane@example.com:0", {
        "kind": kind, "reason": "smtp; 550 5.1.1 <jane@example.com>... User"}, at),), 0)
    result = ses(envelope(without_dsn, "other"))
    assert result == Translation((event("bounced", "ses:other:jane@example.com:0", {"kind": kind, "reason": reason}, at),
                                  event("bounced", "ses:other:richard@example.com:1", {"kind": kind, "reason": reason}, at)),
                                 0)
    assert importable(result.events) and ses(envelope(without_dsn, "other")) == result  # stable ids


@pytest.mark.parametrize("name", ["complaint_with_feedback_report", "complaint_without_feedback_report"])
def test_ses_complaint(name):
    assert ses(envelope(ours_ses(NOTIFICATIONS[name]))).events == (
        event("unsubscribed", f"ses:{SNS_ID}:richard@example.com:0", COMPLAINT, "2016-01-27T14:59:38Z"),)
    not_spam = ours_ses(NOTIFICATIONS[name])
    not_spam["complaint"]["complaintFeedbackType"] = "not-spam"
    assert ses(envelope(not_spam)) == Translation((), 1)


@pytest.mark.parametrize("sample_", [NOTIFICATIONS["delivery"], SES_EVENTS["Delivery"], SES_EVENTS["DeliveryDelay"]])
def test_ses_kinds_we_ignore(sample_):
    assert ses(envelope(ours_ses(sample_, tag=True))) == Translation((), 1)


def test_ses_event_publishing_records():
    events = [e for kind in ("Bounce", "Complaint", "Open", "Click")
              for e in ses(envelope(ours_ses(SES_EVENTS[kind]), kind)).events]
    assert events == [
        event("bounced", "ses:Bounce:recipient@example.com:0", {"kind": "hard", "reason": "smtp; 550 5.1.1 user unknown"},
              "2017-08-05T00:41:02Z"),
        event("unsubscribed", "ses:Complaint:recipient@example.com:0", COMPLAINT, "2017-08-05T00:41:02Z"),
        event("opened", "ses:Open", None, "2017-08-09T22:00:19Z"),
        event("clicked", "ses:Click", {"url": "http://docs.aws.amazon.com/ses/latest/DeveloperGuide/send-email-smtp.html"},
              "2017-08-09T23:51:25Z")]
    assert importable(tuple(events))


def test_ses_our_header_comes_first_in_any_case_then_the_message_id():
    notification = ours_ses(SES_EVENTS["Click"], header=message_id(OTHER, "news@example.com"), tag=True)
    notification["mail"]["headers"][-1]["name"] = "x-campaign-message"
    assert ses(envelope(notification)).events[0]["message"] == MESSAGE
    del notification["mail"]["headers"][-1], notification["mail"]["commonHeaders"]["messageId"]
    assert ses(envelope(notification)).events[0]["message"] == OTHER  # from the Message-ID header


def test_ses_a_bcc_copy_is_ignored():
    notification = ours_ses(NOTIFICATIONS["bounce_without_dsn"])
    notification["mail"]["commonHeaders"]["to"] = ["Richard Doe <Richard@Example.com>"]
    result = ses(envelope(notification))
    assert [e["id"] for e in result.events] == [f"ses:{SNS_ID}:richard@example.com:1"] and result.ignored == 1
    del notification["mail"]["commonHeaders"]["to"]  # not known: every recipient counts
    assert len(ses(envelope(notification)).events) == 2


@pytest.mark.parametrize("key, url", [
    ("SigningCertURL", "http://sns.us-west-2.amazonaws.com/cert.pem"),
    ("SigningCertURL", "https://sns.us-west-2.amazonaws.com.evil.example/cert.pem"),
    ("SigningCertURL", "https://evil.example/sns.us-west-2.amazonaws.com/cert.pem"),
    ("SigningCertURL", "https://user@sns.us-west-2.amazonaws.com/cert.pem"),
    ("SigningCertURL", "https://[sns.us-west-2.amazonaws.com/cert.pem"),
    ("SubscribeURL", "https://evil.example/?Action=ConfirmSubscription"),
])
def test_sns_urls_must_be_on_sns(key, url):
    with pytest.raises(EspError, match=f"^SNS message: {key} must be an https URL on sns.<region>.amazonaws.com$"):
        ses({**SNS["SubscriptionConfirmation"], key: url})
    china = "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-x.pem"
    assert ses({**SNS["UnsubscribeConfirmation"], "SigningCertURL": china}).ignored == 1


def opened(**mail) -> dict:
    return envelope({"eventType": "Open", "open": {"timestamp": "2017-08-09T22:00:19Z"}, "mail": mail})


def bounce(**changes) -> dict:
    notification = ours_ses(NOTIFICATIONS["bounce_with_dsn"])
    notification["bounce"].update(changes)
    return envelope(notification)


@pytest.mark.parametrize("payload, problem", [
    ([SNS["Notification"]], "an SNS message is a JSON object, got a list"),
    (NOTIFICATIONS["delivery"], "an SES notification without its SNS envelope: turn off raw message delivery"),
    ({**SNS["Notification"], "Type": None}, "SNS message: Type is missing"),
    ({**SNS["Notification"], "Type": "Note"}, "SNS message: Type must be one of SubscriptionConfirmation, "),
    ({**SNS["Notification"], "SignatureVersion": 1}, "SNS message: SignatureVersion must be a string, got a number"),
    ({**SNS["Notification"], "SignatureVersion": "3"}, 'SNS message: SignatureVersion must be "1" or "2"'),
    ({**SNS["Notification"], "Signature": ""}, "SNS message: Signature is empty"),
    ({**SNS["SubscriptionConfirmation"], "Token": 5}, "SNS message: Token must be a string, got a number"),
    ({**SNS["Notification"], "Message": {"eventType": "Open"}}, "SNS message: Message must be a string, got an object"),
    ({**SNS["Notification"], "Message": "[" * 100_000}, "SNS message: Message is nested too deeply"),
    (envelope(["Bounce"]), "Message must be a JSON object (an SES notification), got a list"),
    (envelope({"mail": {}}), "Message: notificationType or eventType is missing"),
    (envelope({"eventType": "Open", "mail": {}}), "Message: open is missing"),
    (envelope({"eventType": "Open", "open": {"timestamp": "2017-08-09T22:00:19Z"}}), "Message: mail is missing"),
    (envelope({"eventType": "Click", "click": {"timestamp": "2017-08-09T22:00:19Z"}, "mail": {}}),
     "Message: click.link is missing"),
    (opened(headers=[{}]), "Message: mail.headers[0] must be an object with a string name and value"),
    (opened(commonHeaders={"to": [None]}), "Message: mail.commonHeaders.to must be a list of strings"),
    (bounce(timestamp="2016-01-27T14:59:38"), "Message: bounce.timestamp must be an ISO 8601 time with a timezone"),
    (bounce(timestamp="1899-12-31T23:00:00-05:00"), "Message: bounce.timestamp is out of range (dates must be"),
    (bounce(timestamp="0001-01-01T00:00:00+01:00"), "Message: bounce.timestamp is out of range"),
    (bounce(bounceType=None), "Message: bounce.bounceType is missing"),
    (bounce(bouncedRecipients={}), "Message: bounce.bouncedRecipients must be a list, got an object"),
    (bounce(bouncedRecipients=[{"emailAddress": "jane@example.com"}, {"status": "5.1.1"}]),
     "Message: bounce.bouncedRecipients[1] must be an object with a string emailAddress"),
    (bounce(bouncedRecipients=[{"emailAddress": "jane@example.com", "diagnosticCode": 550}]),
     "Message: bounce.bouncedRecipients[0].diagnosticCode must be a string, got a number"),
    (bounce(bouncedRecipients=[{"emailAddress": "jane@example.com\n"}]),
     "Message: the event id made of MessageId and bounce.bouncedRecipients[0].emailAddress must be printable"),
])
def test_ses_malformed(payload, problem):
    with pytest.raises(EspError) as raised:
        ses(payload)
    assert str(raised.value).startswith(problem) and "\n" not in str(raised.value)


# --- any JSON at all ---------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


def near(*values):
    """One of ``values`` three times in four, else any JSON: payloads near a good one."""
    return st.sampled_from([False, True, True, True]).flatmap(lambda good: st.sampled_from(values) if good else JSON)


SENDGRID_EVENT = st.fixed_dictionaries(
    {"event": near("open", "click", "bounce", "blocked", "dropped", "spamreport", "processed"),
     "timestamp": near(1513299569, 1782896400.5)},
    optional={"smtp-id": near(HEADER), "engine_message": near(MESSAGE), "sg_event_id": near("FOTFFO0ecsBE=="),
              "url": near("https://example.com/a"), "reason": near("550"), "type": near("bounce", "blocked")})
TIME = near("2017-08-09T22:00:19Z", "2017-08-09T22:00:19.652+03:00")
RECIPIENTS = near([]) | st.lists(st.fixed_dictionaries(
    {"emailAddress": near("a@example.com", "b@example.com")}, optional={"diagnosticCode": near("550")}), max_size=3)
SES_NOTIFICATION = st.fixed_dictionaries({
    "eventType": near("Bounce", "Complaint", "Open", "Click", "Delivery"),
    "mail": st.fixed_dictionaries(
        {"commonHeaders": st.fixed_dictionaries({"messageId": near(HEADER)}, optional={"to": near(["a@example.com"])})},
        optional={"headers": near([{"name": MESSAGE_HEADER, "value": MESSAGE}])}),
    "bounce": st.fixed_dictionaries({"timestamp": TIME, "bounceType": near("Permanent", "Transient"),
                                     "bouncedRecipients": RECIPIENTS}, optional={"bounceSubType": JSON}),
    "complaint": st.fixed_dictionaries({"timestamp": TIME, "complainedRecipients": RECIPIENTS},
                                       optional={"complaintFeedbackType": near("abuse", "not-spam")}),
    "open": st.fixed_dictionaries({"timestamp": TIME}),
    "click": st.fixed_dictionaries({"timestamp": TIME, "link": near("https://example.com/a")}),
})


def translated(translate, payload) -> Translation | None:
    """The translation, or None for an EspError (with a one-line message); anything else fails."""
    try:
        result = translate(payload)
    except EspError as exc:
        assert str(exc) and "\n" not in str(exc)
        return None
    assert isinstance(result, Translation)
    return result


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_any_json_gives_a_translation_or_an_esp_error(payload):
    translated(sendgrid, payload)
    translated(ses, payload)


@settings(max_examples=300, deadline=None)
@given(st.lists(SENDGRID_EVENT, min_size=1, max_size=3), SES_NOTIFICATION)
def test_payloads_near_good_ones_give_importable_events_or_an_esp_error(events, notification):
    for result in (translated(sendgrid, events), translated(ses, envelope(notification))):
        assert result is None or importable(result.events)
