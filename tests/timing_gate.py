"""Tests that assert a wall-clock bound, run beside the other pytest-xdist worker's tests without
the other worker's load making them fail (tests/conftest.py wires it in)."""

import contextlib
import fcntl


class Gate:
    """Under pytest-xdist, a test marked `timing` (it asserts a wall-clock bound) runs its body
    while no other worker runs a test, so that the other worker's load cannot make it fail: every
    test holds a shared lock for the whole of its run (fixtures included), and a timing test's
    body trades it for an exclusive one. A test waiting for its turn alone holds the turnstile, so
    that tests starting meanwhile queue behind it instead of starving it. A test whose bound
    covers only part of its body (after a server started or a pipeline ran) asks for the `timed`
    fixture instead and runs only that part alone (`with timed(): ...`): the other worker stays
    busy for the rest."""

    def __init__(self, folder):
        self.turnstile = open(folder / "timing-turnstile.lock", "a")
        self.tests = open(folder / "timing-tests.lock", "a")

    def _take_share(self):
        # through the turnstile, so that a test waiting to run alone goes first
        fcntl.flock(self.turnstile, fcntl.LOCK_EX)
        fcntl.flock(self.tests, fcntl.LOCK_SH)
        fcntl.flock(self.turnstile, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def shared(self):
        self._take_share()
        try:
            yield
        finally:
            fcntl.flock(self.tests, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def alone(self):
        fcntl.flock(self.turnstile, fcntl.LOCK_EX)
        try:
            fcntl.flock(self.tests, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self.tests, fcntl.LOCK_UN)
        finally:
            fcntl.flock(self.turnstile, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def alone_within(self):
        """Alone for a while inside a test that holds the shared lock: let go of the share first
        (two workers upgrading at once would otherwise wait on each other), and take it back
        through the turnstile like any test starting."""
        fcntl.flock(self.tests, fcntl.LOCK_UN)
        try:
            with self.alone():
                yield
        finally:
            self._take_share()
