"""The commands of payment notifications: `behavior senders add|list|revoke` and the report
of `behavior ingest --inbox` (registered by `pipelines.cli`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from behavior.errors import BehaviorError
from pipelines.cli_state import State, state

senders_app = typer.Typer(help="Systems allowed to send signed payment notifications (POST /v1/notifications/payments).",
                          no_args_is_help=True)


def _cli() -> State:
    return state


@senders_app.command("add")
def senders_add(
    name: Annotated[str, typer.Argument(help="A name for the sending system, e.g. alipay; sent as Behavior-Sender.")],
    rsa_public_key: Annotated[Optional[Path], typer.Option("--rsa-public-key", help="PEM file of the sender's RSA public key: it signs with RSA2 (SHA256withRSA) instead of an HMAC secret.")] = None,
) -> None:
    """Register a sender; prints its HMAC secret once (an RSA2 sender has none)."""
    from behavior.store.senders import add_sender

    st = _cli()
    pem = None
    if rsa_public_key is not None:
        try:
            pem = rsa_public_key.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise BehaviorError(f"--rsa-public-key {rsa_public_key}: cannot read it ({exc})") from None
    secret = add_sender(st.home.root, name, pem)
    if secret is None:
        st.console.result(f"sender {name}: signatures are checked with the RSA public key of {rsa_public_key}")
    else:
        st.console.result(secret)
        st.console.progress(f"sender {name}: the HMAC-SHA256 secret above is shown only this once; give it to the sender")


@senders_app.command("list")
def senders_list() -> None:
    """Senders with their kind (hmac or rsa2) and state (never the secrets)."""
    from behavior.store.senders import read_senders

    st = _cli()
    for s in read_senders(st.home.root):
        state = f"revoked {s.revoked_at}" if s.revoked_at else "active"
        st.console.result(f"{s.name}: {'rsa2' if s.rsa_public_key else 'hmac'}, {state} (added {s.created_at})")


@senders_app.command("revoke")
def senders_revoke(name: Annotated[str, typer.Argument(help="The sender's name.")]) -> None:
    """Revoke a sender: its notifications get 401 from then on, on every worker."""
    from behavior.store.senders import revoke_sender

    st = _cli()
    revoke_sender(st.home.root, name)
    st.console.result(f"revoked {name}")


def inbox_summary(rep: dict) -> str:
    """The one-line result of `behavior ingest --inbox`."""
    if rep["ingest_id"] is None and not rep["quarantined"]:
        return f"inbox: nothing to move (pruned {rep['pruned']:,} lines the active bundle holds)"
    reasons = ", ".join(f"{n:,} {r}" for r, n in rep["rejected_by_reason"].items())
    return (f"inbox -> lake: read {rep['read']:,}, stored {rep['accepted']:,}, duplicates {rep['duplicates']:,}, "
            f"rejected {rep['rejected']:,}{f' ({reasons})' if reasons else ''}; rejected by the endpoint and "
            f"quarantined {rep['quarantined']:,}; pruned {rep['pruned']:,} ({rep['seconds']:.1f} s)")


def ingest_inbox_command(paths: list[Path] | None, inbox: bool, as_json: bool, config: Path | None) -> None:
    """`behavior ingest --inbox` (files and --inbox do not mix; no files and no --inbox is a usage error)."""
    import json

    from pipelines.config import load_config
    from pipelines.inbox_ingest import ingest_inbox

    if not inbox:
        raise BehaviorError("name the files to ingest (behavior ingest PATH...), or pass --inbox to move the "
                            "payment notifications into the lake")
    if paths:
        raise BehaviorError("--inbox moves the notifications only: ingest files in another call")
    st = _cli()
    with st.console.status("moving the inbox") as status:
        rep = ingest_inbox(st.home, progress=status.update, config=load_config(config))
    st.console.result(json.dumps(rep, indent=2) if as_json else inbox_summary(rep))


def notify_command(
    file: Annotated[Path, typer.Argument(help="A payment export (CSV, Parquet, JSON lines) with payment_id and line_no.")],
    sender: Annotated[str, typer.Option(help="The sender's name (Behavior-Sender), as registered with `behavior senders add`.")],
    url: Annotated[str, typer.Option(help="The API's base URL, e.g. http://127.0.0.1:8000.")],
    secret_file: Annotated[Optional[Path], typer.Option(help="File holding the sender's HMAC secret (default: $BEHAVIOR_NOTIFY_SECRET, else the data home's senders file).")] = None,
    rsa_private_key: Annotated[Optional[Path], typer.Option(help="PEM file of an RSA2 sender's private key (signs instead of an HMAC secret).")] = None,
    batch: Annotated[int, typer.Option(min=1, max=1000, help="Payments per request.")] = 100,
    retries: Annotated[int, typer.Option(min=0, help="Retries of a request that failed in transit or got 429 / 5xx (exponential backoff).")] = 6,
) -> None:
    """Sign and send a payment export as payment notifications (POST /v1/notifications/payments)."""
    import os

    from behavior.store.senders import read_senders
    from pipelines.notify_send import payments_from_table, send_payments, signer
    from pipelines.readers import read_source
    from behavior.validate import ROW

    st = _cli()
    if rsa_private_key is not None:
        sign = signer(rsa_private_pem=rsa_private_key.read_bytes())
    else:
        secret = secret_file.read_text() if secret_file else os.environ.get("BEHAVIOR_NOTIFY_SECRET")
        if secret is None:
            known = {s.name: s for s in read_senders(st.home.root)}
            if sender not in known or known[sender].secret is None:
                raise BehaviorError(f"no HMAC secret for sender {sender!r}: pass --secret-file, set "
                                    "BEHAVIOR_NOTIFY_SECRET, or --rsa-private-key for an RSA2 sender")
            secret = known[sender].secret.hex()
        sign = signer(secret_hex=secret)
    src = read_source(file, {"payment_id", "line_no"})
    payments = payments_from_table(src.table.drop_columns([ROW]))
    with st.console.status(f"sending {len(payments):,} payments") as status:
        rep = send_payments(url, sender, payments, sign, batch=batch, retries=retries, progress=status.update)
    reasons: dict[str, int] = {}
    for r in rep.rejected:
        reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
    st.console.result(f"notify: {rep.payments:,} payments in {rep.requests:,} requests: accepted {rep.accepted:,} lines, "
                      f"duplicates {rep.duplicates:,}, rejected {len(rep.rejected):,}"
                      + (" (" + ", ".join(f"{n:,} {r}" for r, n in sorted(reasons.items())) + ")" if reasons else "")
                      + (f"; {rep.retries} retries" if rep.retries else ""))
