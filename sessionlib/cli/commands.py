"""What each ``sessionpool`` command does, on a connected store."""

from __future__ import annotations

import difflib
import sys
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from ..client import MongoSessions
from ..discovery import PoolKey
from ..encryption import Encryption, create_data_key, create_key_file, rotate_master_key
from ..exceptions import SessionPoolError
from ..maintenance import encrypt_pool
from ..metadata import Target
from ..states import State, state_filter, state_of
from ..stats import PoolStatistics
from ..store import SessionStore
from ..transfer import dump_line, parse_lines, redact
from ..updates import REASON
from .importing import import_lines
from .output import Output, Progress, cell
from .parser import NotFoundError, UsageError, parse_id, parse_period, split_pool
from .revive import revive, summary
from .top import Frame, refresh, top

__all__ = ["COMMANDS", "encryption_of"]

Command = Callable[[SessionStore, Any, Output], Awaitable[None]]


def _pool(store: SessionStore, args: Any) -> MongoSessions:
    database, collection = split_pool(args.pool)
    assert collection is not None
    return store.pool(database, collection)


def _read_input(path: str) -> IO[bytes]:
    if path == "-":
        return sys.stdin.buffer
    try:
        return Path(path).open("rb")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None


async def cmd_add(store: SessionStore, args: Any, out: Output) -> None:
    pool = _pool(store, args)
    text = args.document if args.document is not None else sys.stdin.read()
    lines = list(parse_lines([text.encode("utf-8")], key=None))
    if len(lines) != 1:
        raise UsageError("add takes exactly one JSON object")
    result = await pool.add(lines[0].document)
    out.result(f"added session {cell(result.inserted_id)}", {"inserted_id": result.inserted_id})


async def cmd_import(store: SessionStore, args: Any, out: Output) -> None:
    pool = _pool(store, args)
    with _read_input(args.file) as source:
        inserted, skipped = await import_lines(pool, source, args.key, progress=not args.json)
    out.result(
        f"imported {inserted} session(s); {skipped} already present",
        {"inserted": inserted, "skipped": skipped},
    )


def _query(pool: MongoSessions, state: str | None, reason: str | None = None) -> dict[str, Any]:
    """The filter of sessions in *state* whose last reason is *reason* (each if given)."""
    query: dict[str, Any] = {}
    if state is not None:
        query = state_filter(pool, State(state), pool.core.read_now().at)
    if reason is not None:
        query = {"$and": [query, {REASON: reason}]} if query else {REASON: reason}
    return query


async def cmd_export(store: SessionStore, args: Any, out: Output) -> None:
    pool = _pool(store, args)
    for document in await pool.find(filter=_query(pool, args.state), sort=[("_id", 1)]):
        out.stream.write(dump_line(document if args.reveal else redact(document)) + "\n")


async def cmd_list(store: SessionStore, args: Any, out: Output) -> None:
    pool = _pool(store, args)
    documents = await pool.find(
        filter=_query(pool, args.state, args.reason), sort=[("_id", 1)], limit=args.limit
    )
    core = pool.core
    now = pool.clock()
    rows = []
    for raw in documents:
        doc = core.load(raw)
        rows.append(
            {
                "_id": doc["_id"],
                "state": state_of(doc, now, pool).value,
                "next_use": doc.get(pool.next_use),
                "last_use": doc.get(pool.last_use),
                "count_use": doc.get(pool.count_use, 0),
                "count_success": doc.get(pool.count_success, 0),
                "reason": doc.get(REASON),
            }
        )
    headers = ["_id", "state", "next_use", "last_use", "uses", "successes", "reason"]
    human = out.table(headers, [list(row.values()) for row in rows]) if rows else "no sessions"
    if args.limit and len(rows) == args.limit:
        total = await pool.count_documents(_query(pool, args.state, args.reason))
        if total > len(rows):
            human += f"\n{len(rows)} of {total} shown: --limit N for more, --limit 0 for all"
    out.result(human, rows)


def _stats_row(key: PoolKey, stats: PoolStatistics, now: datetime) -> dict[str, Any]:
    target = stats.target
    return {
        "pool": str(key),
        "total": stats.total,
        "available": stats.available,
        "in_use": stats.in_use,
        "locked": stats.locked,
        "blocked": stats.blocked,
        "budget": stats.budget,
        "inactive": stats.inactive,
        "other": stats.other,
        "uses": stats.uses,
        "successes": stats.successes,
        "next_unlock": stats.next_unlock,
        "target": None if target is None else target.min_available,
        "breaker": "open" if stats.breaker.is_open(now) else "closed",
    }


async def _pools_of(store: SessionStore, target: str) -> tuple[list[PoolKey], bool]:
    database, collection = split_pool(target, allow_database=True)
    if collection is not None:
        return [PoolKey(database, collection)], True
    return await store.list_pools([database]), False


async def cmd_stats(store: SessionStore, args: Any, out: Output) -> None:
    keys, single = await _pools_of(store, args.pool)
    found = await store.statistics(keys)  # targets and breakers included
    now = store.clock()
    rows = []
    for key in keys:
        outcome = found[key]
        if isinstance(outcome, SessionPoolError):
            raise outcome
        rows.append(_stats_row(key, outcome, now))
    headers = list(rows[0]) if rows else []
    human = out.table(headers, [list(r.values()) for r in rows]) if rows else "no pools"
    out.result(human, rows[0] if single else rows)


async def cmd_migrate(store: SessionStore, args: Any, out: Output) -> None:
    keys, single = await _pools_of(store, args.pool)
    rows = []
    for key in keys:
        outcome = await store.pool(*key).migrate()
        rows.append({"pool": str(key), **outcome})
    human = "\n".join(
        f"{row['pool']}: {row['order_keys']} session(s) given an order key"
        + (
            f"; dropped index(es) {', '.join(row['dropped_indexes'])}"
            if row["dropped_indexes"]
            else ""
        )
        for row in rows
    )
    out.result(human or "no pools", rows[0] if single else rows)


async def _each_id(
    store: SessionStore,
    args: Any,
    out: Output,
    verb: str,
    action: Callable[[MongoSessions, dict[str, Any]], Awaitable[Any]],
) -> None:
    pool = _pool(store, args)
    ids = [parse_id(text, args.id_type) for text in args.ids]
    missing = []
    for session_id in ids:
        result = await action(pool, {"_id": session_id})
        count = getattr(result, "matched_count", getattr(result, "deleted_count", 0))
        if not count:
            missing.append(session_id)
    done = len(ids) - len(missing)
    out.result(f"{verb} {done} session(s)", {verb: done, "missing": missing})
    if missing:
        raise NotFoundError(f"no session with _id {', '.join(map(cell, missing))}")


def _ids(
    verb: str, action: Callable[[MongoSessions, dict[str, Any], Any], Awaitable[Any]]
) -> Command:
    async def command(store: SessionStore, args: Any, out: Output) -> None:
        options = {
            "period": parse_period(getattr(args, "period", None)),
            "until": getattr(args, "until", None),
            "scope": getattr(args, "scope", None),
            "reason": getattr(args, "reason", None),
        }
        await _each_id(store, args, out, verb, lambda pool, s: action(pool, s, options))

    return command


async def cmd_why(store: SessionStore, args: Any, out: Output) -> None:
    pool = _pool(store, args)
    session_id = parse_id(args.id, args.id_type)
    found = await pool.history({"_id": session_id})
    if found is None:
        raise NotFoundError(f"no session with _id {cell(session_id)}")
    rows = [
        [entry.get(key) for key in ("at", "kind", "reason", "fence", "by")]
        for entry in found["history"]
    ]
    human = f"session {out.cell(session_id)}: last reason {out.cell(found['reason'])}\n"
    human += out.table(["at", "kind", "reason", "fence", "by"], rows) if rows else "no history"
    out.result(human, found)


def _target_row(target: Target | None) -> dict[str, Any]:
    if target is None:
        return {"min_available": None, "min_available_ratio": None}
    return target.as_document()


async def _require_pool(store: SessionStore, pool: MongoSessions) -> None:
    """Refuse a pool that does not exist, naming the closest that do.

    Raises:
        UsageError: no collection of that name in its database.
    """
    database = pool.db_name
    names = [key.collection for key in await store.list_collections([database])]
    if pool.collection_name in names:
        return
    close = difflib.get_close_matches(pool.collection_name, names, n=3)
    hint = f"; did you mean {', '.join(f'{database}.{n}' for n in close)}?" if close else ""
    raise UsageError(
        f"no pool {database}.{pool.collection_name}{hint} "
        "(--create sets a target for a pool that is coming)"
    )


async def cmd_target(store: SessionStore, args: Any, out: Output) -> None:
    pool = _pool(store, args)
    wanted = (args.min_available, args.min_available_ratio)
    if args.clear and wanted != (None, None):
        raise UsageError("--clear takes no threshold")
    if wanted != (None, None) and not args.create:
        await _require_pool(store, pool)
    if args.clear:
        await pool.set_target(None)
    elif wanted != (None, None):
        await pool.set_target(Target(*wanted), by="sessionpool-cli")
    target = await pool.target()
    row = _target_row(target)
    if target is None:
        human = f"{args.pool}: no target (the alert rules' defaults apply)"
    else:
        parts = []
        if target.min_available is not None:
            parts.append(f"at least {target.min_available} available")
        if target.min_available_ratio is not None:
            parts.append(f"at least {target.min_available_ratio:.0%} available")
        human = f"{args.pool}: target " + ", ".join(parts)
    out.result(human, {"pool": args.pool, **row})


async def cmd_breaker(store: SessionStore, args: Any, out: Output) -> None:
    pool = _pool(store, args)
    if args.reset:
        await pool.reset_breaker()
    state = await pool.breaker_state()
    now = pool.clock()
    is_open = state.is_open(now)
    data = {"pool": args.pool, **asdict(state), "open": is_open}
    if is_open:
        assert state.until is not None
        human = (
            f"{args.pool}: breaker OPEN since {out.cell(state.opened_at)} until "
            f"{out.cell(state.until)}: "
            f"{state.sessions} sessions ({state.share:.0%} of those handed out) failed with "
            f"{cell(state.error)}; such failures release their session"
        )
    else:
        human = f"{args.pool}: breaker closed"
    human += f" (tripped {state.trips} time(s))"
    out.result(human, data)


async def cmd_revive(store: SessionStore, args: Any, out: Output) -> None:
    pool = _pool(store, args)
    outcomes = await revive(
        pool,
        args.check,
        states=args.state,
        concurrency=args.concurrency,
        apply=args.apply,
        check_timeout=args.check_timeout,
        limit=args.limit,
        progress=not args.json,
    )
    data = summary(outcomes, apply=args.apply)
    rows = [[o.id, o.state, o.verdict, o.action, o.detail] for o in outcomes]
    lines = [out.table(["_id", "state", "check", "action", "detail"], rows)] if rows else []
    done = (
        f"released {data['released']}, activated {data['activated']}"
        if args.apply
        else f"would release {data['would_release']}, would activate {data['would_activate']}"
        " (dry run: nothing written; --apply to write)"
    )
    lines.append(
        f"checked {data['checked']}: {data['passed']} passed, {data['failed']} failed, "
        f"{data['error']} error(s), {data['changed']} changed meanwhile; {done}"
    )
    out.result("\n".join(lines), data)


def encryption_of(args: Any) -> Encryption | None:
    """The encryption the command's ``--key-file`` names, if any.

    Raises:
        ConfigurationError: the key vault or key name is invalid.
    """
    if getattr(args, "key_file", None) is None:
        return None
    return Encryption(
        key_file=args.key_file, key_vault=args.key_vault, key_alt_name=args.key_alt_name
    )


async def cmd_keys(store: SessionStore, args: Any, out: Output) -> None:
    encryption = encryption_of(args)
    assert encryption is not None  # --key-file is required
    if args.keys_action == "create":
        made_file = create_key_file(args.key_file)
        made_key = await create_data_key(encryption, store.client)
        file_text = "created (mode 0600)" if made_file else "exists"
        key_text = "created" if made_key else "exists, and the key file opens it"
        out.result(
            f"key file {args.key_file}: {file_text}\n"
            f"data key {args.key_alt_name!r} in {args.key_vault}: {key_text}",
            {"key_file_created": made_file, "data_key_created": made_key},
        )
        return
    made_file = create_key_file(args.new_key_file)
    count = await rotate_master_key(encryption, args.new_key_file, store.client)
    out.result(
        f"re-wrapped {count} data key(s) of {args.key_vault} under {args.new_key_file}"
        f"{' (created, mode 0600)' if made_file else ''}; {args.key_file} opens none of them now,"
        " and no session was rewritten",
        {"rewrapped": count, "new_key_file_created": made_file},
    )


async def cmd_encrypt(store: SessionStore, args: Any, out: Output) -> None:
    encryption = encryption_of(args)
    assert encryption is not None  # --key-file is required
    pool = _pool(store, args)
    bar = Progress(0, sys.stderr, label="encrypting", enabled=not args.json)

    def progress(done: int, total: int) -> None:
        bar.total, bar.enabled = total, not args.json
        bar.update(done)

    outcome = await encrypt_pool(pool.core, encryption, progress)
    bar.done()
    again = " (run again for those)" if outcome.changed else ""
    out.result(
        f"encrypted {outcome.encrypted} session(s); {outcome.already} already were; "
        f"{outcome.changed} changed meanwhile{again}",
        asdict(outcome),
    )


async def cmd_top(store: SessionStore, args: Any, out: Output) -> None:
    if args.json:
        frame = Frame()
        await refresh(store, frame, args.pattern, rediscover=True)
        now = store.clock()
        out.result("", [row.as_dict(now) for row in frame.rows.values()])
        return
    await top(
        store,
        args.pattern,
        interval=args.interval,
        stream=out.stream,
        zone=out.zone,
        once=args.once,
    )


async def cmd_ensure_indexes(store: SessionStore, args: Any, out: Output) -> None:
    names = await _pool(store, args).ensure_indexes()
    out.result(f"indexes present: {', '.join(names)}", {"indexes": names})


COMMANDS: dict[str, Command] = {
    "add": cmd_add,
    "import": cmd_import,
    "export": cmd_export,
    "list": cmd_list,
    "stats": cmd_stats,
    "migrate": cmd_migrate,
    "ensure-indexes": cmd_ensure_indexes,
    "lock": _ids("locked", lambda pool, s, o: pool.session_lock(s, **o)),
    "block": _ids("blocked", lambda pool, s, o: pool.session_block(s, **o)),
    "release": _ids("released", lambda pool, s, o: pool.session_release(s, reason=o["reason"])),
    "activate": _ids("activated", lambda pool, s, o: pool.session_activate(s, reason=o["reason"])),
    "deactivate": _ids(
        "deactivated", lambda pool, s, o: pool.session_inactive(s, reason=o["reason"])
    ),
    "delete": _ids("deleted", lambda pool, s, _: pool.session_delete(s)),
    "why": cmd_why,
    "target": cmd_target,
    "breaker": cmd_breaker,
    "revive": cmd_revive,
    "keys": cmd_keys,
    "top": cmd_top,
    "encrypt": cmd_encrypt,
}
"""Each command's coroutine, by name."""
