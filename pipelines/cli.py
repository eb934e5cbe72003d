"""The `behavior` command line. Every library error becomes one message here, with exit code 2
(bad input or usage); anything unexpected is exit code 1 with a short message, no traceback
unless BEHAVIOR_DEBUG is set."""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.core import TyperGroup

from behavior.errors import BehaviorError
from pipelines.cli_state import state
from pipelines.console import Console
from behavior.store.datahome import PRIVATE_UMASK, DataHome
from pipelines.extras import require_extra


def hoist_global_options(args: list[str], params: list) -> list[str]:
    """`args` with the options of `params` (the global ones) moved to the front, wherever they
    stand: `behavior run --data-dir X` means `behavior --data-dir X run`. Nothing after `--` moves."""
    flags, valued = set(), set()
    for p in params:
        if p.param_type_name == "option":   # (typer vendors its own click: no isinstance)
            (flags if p.is_flag or p.count else valued).update(p.opts + p.secondary_opts)
    front, rest, i = [], [], 0
    while i < len(args):
        a = args[i]
        if a == "--":
            rest += args[i:]
            break
        name = a.split("=", 1)[0]
        if a in flags or (name in valued and "=" in a):
            front.append(a)
        elif a in valued:
            front += args[i:i + 2]
            i += 1
        else:
            rest.append(a)
        i += 1
    return front + rest


class GlobalOptionsAnywhere(TyperGroup):
    """The top command group: its options are accepted before or after the command."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_global_options(args, self.params))


app = typer.Typer(cls=GlobalOptionsAnywhere, add_completion=False, no_args_is_help=True,
                  pretty_exceptions_enable=False,
                  help="Consumer behavior analytics: payment lake, features, models and a published bundle. "
                       "The options below may also follow the command: behavior run --data-dir DIR.")


# the synthetic generator's defaults live in behavior.synth.SynthConfig alone (importing it
# here would slow every command down by a second)
SYNTH_DEFAULT = "(default: behavior.synth.SynthConfig's)"


@app.callback()
def _global(
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir", help="Data home (default: $BEHAVIOR_DATA_DIR or ./data).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress, only results and errors.")] = False,
    log_format: Annotated[str, typer.Option("--log-format", help="Progress off a terminal (stderr): text (a timestamped "
                                            "line per stage start and end) or json (one JSON object per line).")] = "text",
) -> None:
    state.console = Console(quiet=quiet, log_format=log_format)
    state.home = DataHome.resolve(data_dir)
    _make_private(state.home)


def _make_private(home: DataHome) -> None:
    """Everything this process writes is private (0700 folders, 0600 files), and so is what an
    older version left in the data home (said once, on stderr: stdout may be a --json pipe)."""
    os.umask(PRIVATE_UMASK)
    done = home.make_private()
    if done.changed:
        print(f"note: made the data home {home.root} private: {done.changed:,} files and folders that other "
              "local users could read are now 0600 (files) and 0700 (folders)", file=sys.stderr)
    if done.refused:
        print(f"warning: {len(done.refused):,} files under the data home belong to another user and stay readable "
              f"by others, e.g. {done.refused[0]}; run `chmod -R go= {home.root}` as their owner", file=sys.stderr)


def _pairs(values: list[str], option: str) -> dict[str, str]:
    out = {}
    for v in values:
        key, sep, val = v.partition("=")
        if not sep or not key.strip():
            raise BehaviorError(f"{option} {v!r}: write it as canonical=value, e.g. {option} user_id=CustomerID")
        out[key.strip()] = val.strip()
    return out


@app.command()
def synth(
    out: Annotated[Path, typer.Option(help="Folder to write payments.parquet, users.parquet, ... and truth.json.")],
    users: Annotated[Optional[int], typer.Option(min=10, help=f"Number of customers {SYNTH_DEFAULT}.")] = None,
    months: Annotated[Optional[int], typer.Option(min=3, help=f"Months of history {SYNTH_DEFAULT}.")] = None,
    seed: Annotated[Optional[int], typer.Option(help=f"Random seed (same seed, same data) {SYNTH_DEFAULT}.")] = None,
) -> None:
    """Realistic synthetic payment histories with planted ground truth."""
    from pipelines.synth_files import write_synth

    with state.console.status("generating"):
        written = write_synth(out, users=users, months=months, seed=seed)
    for name, rows in written.items():
        state.console.result(f"{rows:>10,}  {out / name}")


@app.command()
def ingest(
    paths: Annotated[Optional[list[Path]], typer.Argument(help="Files, or folders written by `behavior synth`.")] = None,
    table: Annotated[str, typer.Option(help="Table of a single file: payments, items, users, promotions, assignments.")] = "payments",
    map_: Annotated[list[str], typer.Option("--map", help="canonical=source column name (repeatable).")] = [],
    default: Annotated[list[str], typer.Option(help="col=value for a column the file lacks or leaves empty.")] = [],
    date_format: Annotated[Optional[str], typer.Option(help="strftime pattern of the dates, e.g. %d/%m/%Y %H:%M.")] = None,
    dayfirst: Annotated[bool, typer.Option("--dayfirst", help="Slash dates are day-first (31/12/2024).")] = False,
    encoding: Annotated[Optional[str], typer.Option(help="Text encoding of CSV files (default: UTF-8, else Windows-1252).")] = None,
    header: Annotated[Optional[bool], typer.Option("--header/--no-header", help="Whether CSV files have a header (default: detected).")] = None,
    delimiter: Annotated[Optional[str], typer.Option(help="CSV delimiter (default: detected among , ; tab |).")] = None,
    na_values: Annotated[Optional[str], typer.Option(help="Comma-separated texts that mean 'no value' in every column (default: NA,N/A,#N/A,null,NULL,None,nan,NaN,-); empty cells always do.")] = None,
    replace: Annotated[bool, typer.Option("--replace", help="A row whose key is stored with other values replaces the stored line (counted as replaced).")] = False,
    report: Annotated[Optional[Path], typer.Option(help="Write the ingest report (JSON) here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    engine: Annotated[Optional[str], typer.Option(help="Where validation and lake writes run: duckdb or spark (default: the config file's engine name, else duckdb).")] = None,
    config: Annotated[Optional[Path], typer.Option(help="TOML file; its engine section is used.")] = None,
    inbox: Annotated[bool, typer.Option("--inbox", help="Move the payment notifications of the inbox into the lake (instead of files).")] = False,
) -> None:
    """Validate files, quarantine bad rows, append the rest to the lake."""
    if inbox or not paths:
        from pipelines.notify_cli import ingest_inbox_command

        return ingest_inbox_command(paths, inbox, as_json, config)
    from pipelines.config import load_config
    from pipelines.engines import ENGINES
    from pipelines.ingest import IngestOptions, ingest as run_ingest

    if engine is not None and engine not in ENGINES:
        raise BehaviorError(f"--engine {engine}: use one of {', '.join(ENGINES)}")
    cfg = load_config(config)
    markers = {} if na_values is None else {"na_values": tuple(v.strip() for v in na_values.split(",") if v.strip())}
    opts = IngestOptions(table=table, mapping=_pairs(map_, "--map"), defaults=_pairs(default, "--default"),
                         dayfirst=dayfirst, date_format=date_format, encoding=encoding, header=header,
                         delimiter=delimiter, replace=replace, **markers)
    with state.console.status("ingesting") as status:
        rep = run_ingest(state.home, paths, opts, progress=status.update, engine=engine, config=cfg)
    if report:
        from behavior.store import atomic

        atomic.write_json(report, rep)
    from pipelines.summary import all_rejected, ingest_summary

    state.console.result(json.dumps(rep, indent=2) if as_json else ingest_summary(rep, state.home))
    refused = all_rejected(rep)
    if refused:
        raise BehaviorError(refused)


lake_app = typer.Typer(help="The lake's settings.", no_args_is_help=True)
app.add_typer(lake_app, name="lake")


@lake_app.command("currency")
def lake_currency_command(
    code: Annotated[Optional[str], typer.Argument(help="ISO 4217 code to set (only while the lake holds no payments).")] = None,
    engine: Annotated[Optional[str], typer.Option(help="The lake of this engine: duckdb or spark (default: the config file's engine name, else duckdb).")] = None,
    config: Annotated[Optional[Path], typer.Option(help="TOML file; its engine section is used.")] = None,
) -> None:
    """Show the lake's reporting currency, or set it while the lake holds no payments."""
    from pipelines.config import load_config
    from pipelines.ingest import open_lake
    from pipelines.lake import locked
    from pipelines.lake_currency import lake_currency

    with locked(state.home, "lake currency"):
        lake = open_lake(state.home, engine, load_config(config))
        try:
            got = lake_currency(lake, code)
        finally:
            lake.close()
    if got["currency"] is None:
        state.console.result("the lake has no reporting currency yet: set it with `behavior lake currency XXX`, "
                             "or let the first ingest of payments set it (--default currency=XXX)")
    else:
        held = "it holds payments, so it is fixed" if got["payments"] else "it holds no payments yet, so it can change"
        state.console.result(f"{got['currency']} ({held})")


def _parse_as_of(value: Optional[str]) -> Optional[datetime]:
    if value is None:
        return None
    try:
        d = datetime.fromisoformat(value)
    except ValueError:
        raise BehaviorError(f"--as-of {value!r} is not a date; write it as YYYY-MM-DD") from None
    return d.replace(tzinfo=timezone.utc) if d.tzinfo is None else d.astimezone(timezone.utc)


@app.command()
def run(
    as_of: Annotated[Optional[str], typer.Option(help="Point in time YYYY-MM-DD: nothing at or after it is read (default: the day after the last payment).")] = None,
    stages: Annotated[Optional[str], typer.Option(help="Comma-separated stages to run (their prerequisites run too).")] = None,
    report: Annotated[Optional[Path], typer.Option(help="Write the run report (JSON) here too.")] = None,
    config: Annotated[Optional[Path], typer.Option(help="TOML file of stage parameters.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run report as JSON.")] = False,
    engine: Annotated[Optional[str], typer.Option(help="Where the log-level SQL runs: duckdb or spark (default: the config file's engine name, else duckdb).")] = None,
) -> None:
    """Run the batch stages and publish a bundle."""
    from pipelines.config import load_config
    from pipelines.engines import ENGINES
    from pipelines.runner import run_pipeline

    if engine is not None and engine not in ENGINES:
        raise BehaviorError(f"--engine {engine}: use one of {', '.join(ENGINES)}")
    cfg = load_config(config)
    selected = [s.strip() for s in stages.split(",") if s.strip()] if stages else None
    with state.console.status("running") as status:
        rep = run_pipeline(state.home, cfg, as_of=_parse_as_of(as_of), stages=selected, progress=status.update,
                           engine=engine, on_stage=status.stage)
    if report:
        from behavior.store import atomic

        atomic.write_json(report, rep)
    if as_json:
        state.console.result(json.dumps(rep, indent=2))
        return
    from pipelines.summary import run_summary

    state.console.result(run_summary(rep, state.home))


@app.command()
def report(
    bundle: Annotated[Optional[str], typer.Option(help="Bundle version (default: the active bundle).")] = None,
) -> None:
    """Print the path of a bundle's report.html (key figures and plots; opens offline)."""
    from behavior.store.bundle import REPORT_HTML, current_folder

    folder = state.home.bundles / bundle if bundle else current_folder(state.home)
    page = folder / REPORT_HTML.file
    if not page.exists():
        what = f"bundle {bundle}" if bundle else f"the active bundle {folder.name}"
        hint = (f"no such bundle in {state.home.bundles}" if not folder.is_dir()
                else "it was published before report.html existed: run `behavior run` again")
        raise BehaviorError(f"{what} has no {REPORT_HTML.file}: {hint}")
    state.console.result(str(page))


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="uvicorn worker processes.")] = 1,
) -> None:
    """The HTTP API on the active bundle (docs at /docs and /redoc, offline; keys from `behavior keys add`).
    A port that is in use is exit 2 with a message."""
    _serve(host, port, workers)


def _serve(host: str, port: int, workers: int = 1) -> None:
    """Run the API until interrupted. A port another process took meanwhile is PortUnavailable
    (exit 2), not uvicorn's exit code 3."""
    from api.server import serve as run_server
    from pipelines.ports import check_port

    check_port(host, port)
    try:
        run_server(state.home.root, host=host, port=port, workers=workers)
    except SystemExit as exc:
        if exc.code in (0, None):
            raise
        check_port(host, port)
        raise RuntimeError(f"the API did not start (uvicorn exit code {exc.code}); its log above says why") from None


@app.command()
def forget(
    user_ids: Annotated[Optional[list[str]], typer.Argument(help="Ids of the users to erase.")] = None,
    file: Annotated[Optional[Path], typer.Option("--file", help="A file of user ids, one per line ('#' comments).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Erase users from every place under the data home (lake, quarantine, bundles, logs, ...);
    later ingests reject them. Ids are trimmed of whitespace at both ends, as ingest stores them."""
    from behavior.errors import InputError
    from behavior.ids import control_notice, normalize_id
    from pipelines.forget import forget as run_forget

    ids = list(user_ids or [])
    if file is not None:        # lines end at \n only: \x85 or \v are whitespace trimmed off an id, not line ends
        lines = [normalize_id(ln) for ln in file.read_text(encoding="utf-8").split("\n")]
        ids += [ln for ln in lines if ln and not ln.startswith("#")]
    if not any(normalize_id(u) for u in ids):
        raise InputError("name the users to erase: behavior forget USER_ID... or --file FILE")
    for u in dict.fromkeys(normalize_id(u) for u in ids):
        if notice := control_notice(u):
            # recorded all the same: the quarantine keeps such rows' values, and they are erased there
            state.console.note(f"forget: {notice}")
    with state.console.status("erasing"):
        rep = run_forget(state.home, ids)
    state.console.result(json.dumps(rep, indent=2) if as_json else _forget_summary(rep))


def _ids(n: int) -> str:
    return f"{n:,} id" if n == 1 else f"{n:,} ids"


def _forget_summary(rep: dict) -> str:
    lake = ", ".join(f"{t} {n:,}" for t, n in rep["lake_rows"].items()) or "nothing (no lake)"
    lines = [f"forget: {_ids(rep['users'])} recorded in the erasure log (keyed hashes only); "
             f"{rep['matched']:,} of them matched stored rows ({rep['rows_matched']:,} rows of the lake and its quarantine)",
             f"  removed: lake {lake}; quarantine {rep['quarantine_rows']:,}; "
             f"bundles rewritten {len(rep['bundles'])} ({sum(rep['bundles'].values()):,} user rows)"]
    if rep["partial_bundles"]:
        lines.append(f"  half-written bundles removed: {', '.join(rep['partial_bundles'])}")
    if rep["demo_rows"]:
        lines.append(f"  demo input rows removed: {sum(rep['demo_rows'].values()):,} in {', '.join(rep['demo_rows'])}")
    if rep["log_lines"]:
        lines.append("  log lines with the id replaced by [erased]: "
                     + ", ".join(f"{f} {n:,}" for f, n in rep["log_lines"].items()))
    unmatched = rep["unmatched_ids"]
    if unmatched:
        shown = ", ".join(repr(u) for u in unmatched[:10]) + (f" and {len(unmatched) - 10:,} more" if len(unmatched) > 10 else "")
        lines.append(f"  {_ids(len(unmatched))} matched no stored row: {shown}. Recorded all the same (an erasure "
                     "may come before the data): future ingests will reject rows of "
                     + ("that id" if len(unmatched) == 1 else "those ids"))
    if rep["already_logged"]:
        lines.append(f"  {_ids(rep['already_logged'])} already in the erasure log")
    if rep["spill_kept"]:
        lines.append(f"  warning: {len(rep['spill_kept']):,} spill files of running processes were left in "
                     f"{state.home.root / 'tmp'} (e.g. {rep['spill_kept'][0]}); they go when those processes end")
    return "\n".join(lines)


from pipelines.notify_cli import notify_command, senders_app  # noqa: E402 - registered beside the other commands

app.add_typer(senders_app, name="senders")
app.command("notify")(notify_command)

keys_app = typer.Typer(help="API keys: each has an id and scopes; only its SHA-256 is stored.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("add")
def keys_add(
    key_id: Annotated[str, typer.Argument(help="A name for the key, e.g. marketing.")],
    scope: Annotated[list[str], typer.Option("--scope", help="Scope (repeatable): recommendations:read, profiles:read, "
                                                             "segments:read, segments:export, promotions:target, "
                                                             "merchants:read, merchants:export, admin.")],
) -> None:
    """Create a key; prints it once on stdout (it is not stored, only its hash), and on stderr
    where its hash was stored. A running API accepts it at its next request."""
    from behavior.store.keys import create_key

    path = _keys_file()
    state.console.result(create_key(path, key_id, scope))
    # run from another folder, ./data may not be the data home the user meant: name it
    state.console.note(f"key {key_id!r} is shown once, above: keep it now, it cannot be shown again. "
                       f"Only its SHA-256 is stored, in {path} (data home {path.parent}; another one: "
                       "--data-dir DIR or $BEHAVIOR_DATA_DIR).")


def _keys_file() -> Path:
    """The data home's keys file, as an absolute path (what `behavior serve` on this home reads)."""
    return state.home.keys_file


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key's id.")]) -> None:
    """Remove a key."""
    from behavior.store.keys import revoke_key

    path = _keys_file()
    if not path.exists() or not revoke_key(path, key_id):
        raise BehaviorError(f"no key with id {key_id!r} in {path}; `behavior keys list` shows them")
    state.console.result(f"revoked {key_id} in {path}; a running API refuses it from its next request")


@keys_app.command("list")
def keys_list() -> None:
    """Key ids and their scopes (never the keys)."""
    from behavior.store.keys import list_keys

    path = _keys_file()
    for k in list_keys(path) if path.exists() else []:
        state.console.result(f"{k['key_id']}: {', '.join(k['scopes'])} (created {k['created_at']})")


@app.command()
def demo(
    users: Annotated[Optional[int], typer.Option(min=10, help=f"Number of synthetic customers {SYNTH_DEFAULT}.")] = None,
    seed: Annotated[Optional[int], typer.Option(help=f"Random seed {SYNTH_DEFAULT}.")] = None,
    port: Annotated[int, typer.Option(help="Port of the API started at the end.")] = 8000,
    no_serve: Annotated[bool, typer.Option("--no-serve", help="Stop after the run (do not start the API).")] = False,
) -> None:
    """synth -> ingest -> run on a fresh synthetic data set, a summary, then the API on it.

    Refuses (exit 2) a data home with data no demo wrote (no demo.json): use --data-dir DIR / make demo DATA_DIR=DIR."""
    from pipelines.config import load_config
    from pipelines.demo_home import claim_for_demo
    from pipelines.ingest import IngestOptions, ingest as run_ingest
    from pipelines.runner import run_pipeline
    from pipelines.summary import run_summary
    from pipelines.synth_files import synth_config, write_synth

    sized = synth_config(users=users, seed=seed)
    users, seed = sized.users, sized.seed
    if not no_serve:   # before minutes of work, not after
        from pipelines.ports import check_port

        check_port("127.0.0.1", port)
    claim_for_demo(state.home, users=users, seed=seed)
    out = state.home.demo_input
    c = state.console
    started = time.perf_counter()
    with c.status("generating synthetic payment histories"):
        written = write_synth(out, users=users, months=sized.months, seed=seed)
    synth_s = time.perf_counter() - started
    c.result(f"synth: {written.get('payments.parquet', 0):,} payment lines for {users:,} users in {out}")
    with c.status("ingesting") as status:
        rep = run_ingest(state.home, [out], IngestOptions(), progress=status.update)
    c.result(f"ingest: {rep['accepted']:,} rows stored, {rep['duplicates']:,} duplicates, "
             f"{rep['rejected']:,} rejected ({rep['seconds']:.1f} s)")
    with c.status("running stages") as status:
        t = time.perf_counter()
        run_rep = run_pipeline(state.home, load_config(None), progress=status.update, on_stage=status.stage)
        run_s = time.perf_counter() - t
    pipeline_s = time.perf_counter() - started
    c.result(run_summary(run_rep, state.home))
    truth = json.loads((out / "truth.json").read_text())
    planted = {**truth["bgnbd"], **truth["gamma_gamma"]}
    c.result("planted truth (synth): " + ", ".join(f"{k}={v:g}" for k, v in planted.items()))
    promos = truth.get("promotions", {})
    if promos:
        c.result("planted promotion lift (synth, expected over the assigned users): "
                 + ", ".join(f"{pid} {100 * t['true_lift']:+.1f} pp" for pid, t in promos.items()))
    c.result(f"pipeline: {pipeline_s:.0f} s (synth {synth_s:.1f} s, ingest {rep['seconds']:.1f} s, "
             f"run and publish {run_s:.1f} s; per stage: `behavior bench demo`)")
    if no_serve:
        return
    from behavior.store.bundle import PROFILES
    from behavior.store.keys import SCOPES, create_key, revoke_key

    keys = state.home.keys_file
    revoke_key(keys, "demo") if keys.exists() else None
    key = create_key(keys, "demo", list(SCOPES))
    import pyarrow.parquet as pq

    bundle = state.home.bundles / run_rep["bundle_version"]
    some_user = pq.read_table(bundle / PROFILES.file, columns=["user_id"]).column(0)[0].as_py()
    base = f"http://127.0.0.1:{port}"
    c.result(f"\nAPI docs: {base}/docs or {base}/redoc   (demo key with every scope: {key})")
    c.result(f"try:  curl -H 'X-API-Key: {key}' {base}/v1/users/{some_user}/recommendations?n=5")
    c.result(f"      curl -H 'X-API-Key: {key}' {base}/v1/users/{some_user}/profile")
    c.result(f"      curl -H 'X-API-Key: {key}' -H 'Content-Type: application/json' {base}/v1/promotions/targets "
             "-d '{\"target\": \"any\", \"economics\": {\"value_per_conversion\": 20, \"coupon_cost\": 3, "
             "\"contact_cost\": 0.1}, \"budget\": {\"users\": 100}}'")
    if promos:
        c.result(f"      curl -H 'X-API-Key: {key}' {base}/v1/promotions/{next(iter(promos))}/effectiveness")
    from pipelines.notify_demo import serve_with_live_loop

    serve_with_live_loop(state.home, port, key, some_user, c.result)   # a few signed purchases, live


# the suites that load a real server over HTTP (httpx: the `bench` extra)
HTTP_SUITES = ("api", "notify", "scale")


@app.command()
def bench(
    suite: Annotated[Optional[str], typer.Argument(help="ingest, features, loyalty, recommend, recommend-search, churn, api, notify, scale, demo or accuracy (default: all but api, notify, scale, demo and accuracy).")] = None,
    sizes: Annotated[str, typer.Option(help="Comma-separated payment-line counts for the ingest and scale benchmarks.")] = "1000000",
    feature_lines: Annotated[int, typer.Option(help="Payment lines for the feature-stage benchmark (users = lines / 10).")] = 10_000_000,
    customers: Annotated[int, typer.Option(help="Customers for the loyalty fit and scoring benchmark.")] = 1_000_000,
    recommend_lines: Annotated[int, typer.Option(help="Interaction lines for the recommender benchmark (users = lines / 20, items = lines / 200).")] = 20_000_000,
    repeat: Annotated[int, typer.Option(min=1, help="Runs per measurement (the median is reported).")] = 3,
    out: Annotated[Optional[Path], typer.Option(help="Work folder for the generated data (default: a temp folder).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
    users: Annotated[Optional[int], typer.Option(min=10, help="Synthetic customers of the demo benchmark (default 60,000, the demo's), of the recommender search's demo lake (default: --recommend-lines / 20, at most 60,000) and of the accuracy benchmark's synthetic data set (default 20,000).")] = None,
    datasets: Annotated[str, typer.Option(help="Data sets of the accuracy benchmark, comma-separated: synthetic, cdnow, donations, exports.")] = "synthetic,cdnow,donations,exports",
    real_data: Annotated[Optional[Path], typer.Option(help="Folder of CDNOW_sample.txt and donations.csv for the accuracy benchmark (default: the repository's tests/fixtures/real).")] = None,
) -> None:
    """Performance benchmarks (medians and peak memory), the demo's pipeline per step (`demo`), and
    every served model against its baselines on synthetic and real data (`accuracy`)."""
    from pipelines.bench.suites import SUITES, run_bench

    if suite in HTTP_SUITES:
        require_extra("httpx", "bench", f"`behavior bench {suite}`")
    if suite == "demo":
        from pipelines.bench.demo import DEMO_USERS, format_demo_table, run_demo_bench

        rows = run_demo_bench(out, users=users or DEMO_USERS, repeat=repeat, progress=state.console.progress)
        state.console.result(json.dumps(rows, indent=2) if as_json else format_demo_table(rows))
        return
    if suite == "accuracy":
        from pipelines.bench.accuracy import REAL_DATA, format_accuracy, run_accuracy

        results = run_accuracy(out, users=users or 20_000, datasets=tuple(d.strip() for d in datasets.split(",") if d.strip()),
                               real_data=real_data or REAL_DATA, progress=state.console.progress)
        state.console.result(json.dumps(results, indent=2) if as_json else format_accuracy(results))
        return

    if suite == "scale":
        from pipelines.bench.scale import format_scale, run_scale

        rows = run_scale([int(x) for x in sizes.split(",")], out or state.home.root / "bench-scale",
                         progress=state.console.progress)
        state.console.result(json.dumps(rows, indent=2) if as_json else format_scale(rows))
        return
    if suite == "notify":
        from pipelines.bench.notify import format_notify_table, run_notify_bench

        result = run_notify_bench(out or state.home.root / "bench-notify", repeat=repeat,
                                  progress=state.console.progress)
        state.console.result(json.dumps(result, indent=2) if as_json else format_notify_table(result))
        return
    if suite == "api":
        from pipelines.bench.api import format_api_table, run_api_bench

        rows = run_api_bench(out or state.home.root / "bench-api", 10.0, 16, progress=state.console.progress)
        state.console.result(json.dumps(rows, indent=2) if as_json else format_api_table(rows))
        return
    else:
        from pipelines.bench.recommend import search_users

        if suite is not None and suite not in SUITES:
            raise BehaviorError(f"unknown benchmark {suite!r}; choose one of {', '.join(SUITES)}, api, notify, scale, "
                                "demo, accuracy")
        rows = run_bench([int(s) for s in sizes.split(",")], repeat=repeat, work=out, progress=state.console.progress,
                         feature_lines=feature_lines, customers=customers,
                         suites=(suite,) if suite else SUITES,
                         recommend_shape=(max(recommend_lines // 20, 10), max(recommend_lines // 200, 10), recommend_lines),
                         search_users=search_users(recommend_lines, users))
    if as_json:
        state.console.result(json.dumps(rows, indent=2))
    else:
        from pipelines.bench.suites import format_table

        state.console.result(format_table(rows))


def main() -> None:
    try:
        app()
    except BehaviorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except OSError as exc:
        if os.environ.get("BEHAVIOR_DEBUG"):
            raise
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        sys.exit(1)
    except Exception as exc:  # noqa: BLE001 - the one place that turns crashes into a message
        if os.environ.get("BEHAVIOR_DEBUG"):
            raise
        print(f"internal error: {type(exc).__name__}: {exc}\n(set BEHAVIOR_DEBUG=1 for the traceback)",
              file=sys.stderr)
        sys.exit(1)
