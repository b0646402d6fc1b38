"""The governance ledger of this home (`FLEXO_HOME/ledger`, key in `FLEXO_HOME/keys`): what flows
call to record a governance event and what `flexo ledger` reads."""

from __future__ import annotations

from components.errors import GovernanceError, IntegrityError
from flows.settings import flexo_home
from governance.ledger import (
    KEY_FILE,
    Checkpoint,
    Detail,
    Event,
    Ledger,
    LedgerBroken,
    Verification,
)


def home_ledger() -> Ledger:
    home = flexo_home()
    return Ledger(home / "ledger", key_file=home / "keys" / KEY_FILE)


def record(event: Event, actor: str, subject: str, **details: Detail) -> Checkpoint:
    """Append one event; a ledger that fails verification is never appended to."""
    ledger = home_ledger()
    try:
        return ledger.append(event, actor, subject, details)[1]
    except LedgerBroken as e:
        raise IntegrityError(f"the ledger fails verification, so nothing was recorded: {e}; "
                             f"restore {ledger.path} from a backup") from None


def refuse(actor: str, subject: str, action: str, message: str, **details: Detail,
           ) -> GovernanceError:
    """A governance refusal, on the ledger first; returns the error for the caller to raise."""
    record("refusal", actor, subject, action=action, reason=message, **details)
    return GovernanceError(message)


def verify() -> Verification:
    try:
        return home_ledger().verify()
    except LedgerBroken as e:
        raise IntegrityError(f"ledger verification failed: {e}") from None
