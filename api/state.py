"""The serving state of one process: the active bundle, the keys, the limiter, the audit log.

The active bundle is swapped by a single reference assignment. A request takes the reference
once (through `deps.BundleDep`) and uses that object to the end, so a swap never changes a
bundle under a request in flight. Loads run off the event loop and one at a time, and hold no
lock a request waits on: a bundle is read, verified, indexed and matched against the erasure
log and the opt-outs before it is swapped in.

Erasures and opt-outs recorded since the bundle was built (by any process) hold here before
the next request is served: `privacy_changed` is one stat of each file, `apply_privacy` takes
the users out (`api.privacy`). So do keys added or revoked since: `keys_changed` is one stat of
the keys file, `refresh_keys` reads it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from api.audit import AuditLog
from api.bundle import Bundle, load_bundle
from behavior.store.erasure_log import ErasureLog
from api.privacy import FileStamp, IdHashes, PrivacyFiles, Stamp, apply, file_stamp
from api.keys import KeyRing, load_keyring
from behavior.store.keys import KeyFileError
from api.ratelimit import RateLimiter
from api.settings import Settings
from behavior.store.bundle import MANIFEST, BundleError, NoBundleError, list_bundles, set_current

log = logging.getLogger("api.state")


LOAD_SWITCH_INTERVAL_S = 0.001


@contextlib.contextmanager
def short_gil_turns() -> Iterator[None]:
    """While a bundle loads beside the event loop, a thread waiting for the GIL (the event loop)
    gets it after 1 ms instead of Python's 5: a request waits at most that long per turn."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(LOAD_SWITCH_INTERVAL_S)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


@dataclass(frozen=True)
class Swap:
    changed: bool
    version: str
    previous: str | None


class ServingState:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.bundle: Bundle | None = None
        self.keys = KeyRing([])
        self.limiter = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)
        self.unauthenticated = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)  # by client address
        self.audit = AuditLog(settings.audit_log)
        self.erasure_log = ErasureLog(settings.data_dir)   # erased anywhere (CLI or API), by keyed hash
        self.privacy = PrivacyFiles(settings.data_dir, self.erasure_log)
        self._stamp: tuple[int, int] | None = None          # the active bundle's manifest (inode, mtime)
        self._hashes: IdHashes | None = None                # of the active bundle's users
        self._privacy_seen: Stamp | None = None             # the privacy files the active bundle reflects
        self._privacy_lock = threading.Lock()               # the bundle reference is set under it
        # version -> (why it was refused, its manifest stamp then): polling retries it only once
        # the folder changed (e.g. `behavior forget` finished rewriting it)
        self.refused: dict[str, tuple[str, tuple[int, int] | None]] = {}
        self._load_lock = threading.Lock()
        self._keys_path = str(settings.keys_path)           # a str: stat on every request, no Path join
        self._keys_stamp: FileStamp | None | str = "never loaded"

    # ------------------------------------------------------------ keys

    def keys_changed(self) -> bool:
        """True if the keys file changed since the keys were read (one stat; called on every
        request, so that a key added or revoked by any process holds on every worker at once)."""
        return file_stamp(self._keys_path) != self._keys_stamp

    def refresh_keys(self) -> None:
        """Reload the keys if the keys file changed; a broken file keeps the previous keys."""
        # stamp first: a file replaced between the stat and the read is read again next request
        stamp = file_stamp(self._keys_path)
        if stamp == self._keys_stamp:
            return
        try:
            self.keys = load_keyring(self.settings.keys_path, self.settings.api_keys_json)
        except KeyFileError as exc:
            log.error("API keys not reloaded, the previous keys stay: %s", exc)
        self._keys_stamp = stamp

    # ------------------------------------------------------------ bundles

    def current_version(self) -> str:
        try:
            version = self.settings.current_file.read_text().strip()
        except FileNotFoundError:
            raise NoBundleError("none", "no bundle has been published yet (no CURRENT); run `behavior run`") from None
        if not version or "/" in version or version.startswith("."):
            raise BundleError(version or "none", "CURRENT does not name a bundle version")
        return version

    def _manifest_stamp(self, version: str) -> tuple[int, int] | None:
        try:
            st = (self.settings.bundles_dir / version / MANIFEST).stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns)

    def _activate(self, bundle: Bundle, stamp: tuple[int, int] | None) -> Swap:
        """Match the loaded bundle against the erasure log and the opt-outs, then swap it in."""
        secret = self.erasure_log.secret()
        # no secret, no erasure and no opt-out yet: hashes are made when one first appears
        hashes = IdHashes.of(bundle, secret) if secret is not None else None
        while True:
            seen = self.privacy.stamp()
            served = apply(bundle, hashes, self.privacy.read())
            with self._privacy_lock:
                if self.privacy.stamp() != seen:
                    continue            # an erasure or opt-out came in meanwhile: match again
                previous = self.bundle.version if self.bundle else None
                self.bundle = served    # the swap: one reference assignment
                self._hashes, self._privacy_seen, self._stamp = hashes, seen, stamp
                break
        log.info("serving bundle %s (%d profiles)%s", bundle.version, len(served.profiles),
                 f", was {previous}" if previous else "")
        return Swap(True, bundle.version, previous)

    def privacy_changed(self) -> bool:
        """True if the erasure log or the opt-outs changed since the active bundle was matched
        against them (one stat of each; called on every request)."""
        return self.privacy.stamp() != self._privacy_seen

    def apply_privacy(self) -> None:
        """Take the users the erasure log and the opt-outs name now out of the active bundle."""
        with self._privacy_lock:
            seen = self.privacy.stamp()
            if seen == self._privacy_seen:
                return
            if self.bundle is not None:
                changes = self.privacy.read()
                if self._hashes is None and changes.secret is not None:
                    self._hashes = IdHashes.of(self.bundle, changes.secret)
                self.bundle = apply(self.bundle, self._hashes, changes)
            self._privacy_seen = seen

    def reload(self, *, retry_refused: bool = True) -> Swap:
        """Load the bundle CURRENT names if it is not the active one. Raises BundleError if it
        cannot be served; the active bundle then stays."""
        with self._load_lock:
            version = self.current_version()
            active = self.bundle.version if self.bundle else None
            # the same version is loaded again when its folder was rewritten (`behavior forget`)
            if version == active and self._manifest_stamp(version) == self._stamp:
                return Swap(False, version, active)
            stamp = self._manifest_stamp(version)
            if not retry_refused and version in self.refused and self.refused[version][1] == stamp:
                raise BundleError(version, self.refused[version][0])
            with short_gil_turns():
                try:
                    bundle = load_bundle(self.settings.bundles_dir / version)
                except BundleError as exc:
                    self.refused[version] = (str(exc).split(": ", 1)[-1], stamp)
                    log.error("refused %s; still serving %s", exc, active or "nothing")
                    raise
                self.refused.pop(version, None)
                return self._activate(bundle, stamp)

    def poll(self) -> None:
        """One look at CURRENT and the keys file (the background task calls this)."""
        self.refresh_keys()
        try:
            self.reload(retry_refused=False)
        except NoBundleError:
            pass
        except BundleError:
            pass  # logged once when refused

    def rollback(self) -> Swap:
        """Serve the bundle published before the active one and point CURRENT at it."""
        with self._load_lock:
            if self.bundle is None:
                raise NoBundleError("none", "no bundle is loaded, nothing to roll back from")
            active = self.bundle.version
            versions = list_bundles(self.settings.home)
            if active not in versions or versions.index(active) == 0:
                raise BundleError(active, "there is no earlier bundle to roll back to")
            target = versions[versions.index(active) - 1]
            with short_gil_turns():
                bundle = load_bundle(self.settings.bundles_dir / target)
                set_current(self.settings.home, target, "api rollback")
                swap = self._activate(bundle, self._manifest_stamp(target))
            return Swap(True, swap.version, active)

    def erase(self, user_id: str) -> bool:
        """Record the user in the erasure log (durably: every process serving this data home
        drops them at its next request) and drop them here now. False if the active bundle
        does not know the user."""
        bundle = self.bundle
        known = bundle is not None and (user_id in bundle.profiles.index or (
            bundle.recommender is not None and bundle.recommender.users.index_of(user_id) >= 0))
        self.erasure_log.record(user_id)
        self.apply_privacy()
        if known:
            log.info("erased user %s from the serving side", self.erasure_log.key_hash(user_id)[:16])
        return known


async def poll_forever(state: ServingState, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        try:
            await asyncio.to_thread(state.poll)
        except Exception:  # the poller must survive anything; the next round tries again
            log.exception("bundle poll failed")
