"""`engine init`: a new workspace that passes `engine check` and sends one welcome email at its
first tick, with every file commented so that a newcomer can read what each key does."""

from __future__ import annotations

from pathlib import Path

GITIGNORE_LINE = ".engine/"  # the store, the file outbox and letters: runtime state, never committed

SETTINGS = """\
# Workspace settings: what every campaign in campaigns/ has in common.
timezone: UTC                        # dates, cron times and "wait until 09:00" are read in this zone
store: sqlite:///.engine/state.db    # where the engine keeps its state (git-ignored)

partners:
  source: partners.csv               # your CRM export; re-read whenever it changes
  id: id                             # the column that identifies a partner
  fields:                            # the columns campaigns may use, and their types
    name: string
    email: string
    language: string                 # picks a message's translation
    active: bool                     # false: no campaign enrolls the partner
    supplier_emails: bool            # opted in to marketing email

consent:
  email: partner.supplier_emails     # marketing email only to partners who opted in

channels:
  email: {transport: file}           # writes .engine/outbox/email.jsonl instead of sending

web:                                 # links inside emails (unsubscribe, tracking); engine serve answers them
  base_url: http://127.0.0.1:8080    # your public address in production
"""

PARTNERS = """\
id,name,email,language,active,supplier_emails
p001,Aino Korhonen,aino@example.com,fi,true,true
p002,Sam Taylor,sam@example.com,en,true,true
p003,Olle Berg,olle@example.com,sv,false,true
"""

WELCOME = """\
# Welcome: one email to every active partner who opted in, when the engine first sees them.
name: Welcome
description: Greet every new partner once, in their own words; the first campaign of a new workspace.
owner: marketing@example.com
active: true

audience:
  rulesets:
    everyone: partner.email != null

trigger: {audience: true}            # whoever matches the audience, as soon as a tick sees them

steps:
  - id: welcome
    email:
      subject: "Welcome to the partner program, {{ partner.name }}"
      body: |
        Hi {{ partner.name }},

        welcome aboard. Reply to this email if there is anything we can do for you.

        Unsubscribe: {{ unsubscribe_url }}
"""

FILES = {
    "engine.yaml": SETTINGS,
    "partners.csv": PARTNERS,
    "campaigns/welcome.yaml": WELCOME,
}


def create_workspace(root: Path) -> list[Path]:
    """Write the skeleton into ``root`` (made if missing) and git-ignore ``.engine/``; the files
    written. FileExistsError, before anything is written, when one of them exists already."""
    existing = [root / name for name in FILES if (root / name).exists()]
    if existing:
        raise FileExistsError(existing[0])
    written = []
    for name, text in FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    (root / "groups").mkdir(exist_ok=True)
    (root / "templates").mkdir(exist_ok=True)
    written.append(_ignore_state(root / ".gitignore"))
    return written


def _ignore_state(path: Path) -> Path:
    """Add ``.engine/`` to the .gitignore (kept as it is when it already ignores it)."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    lines = {line.strip() for line in text.splitlines()}
    if not lines & {GITIGNORE_LINE, ".engine", "/.engine/", "/.engine"}:
        path.write_text(text + ("" if not text or text.endswith("\n") else "\n") + GITIGNORE_LINE + "\n", encoding="utf-8")
    return path
