"""One pytest session per module's run, kept across its mutants (``tools/mutation.py``).

mutmut forks a child per mutant from its main process and calls ``pytest.main`` there: every
mutant pays pytest's start (parsing the options, registering some forty plugins, loading the
conftest, collecting the test files named, starting the session), about 50 ms before its first
test, a quarter of a typical mutant's run here. All of it is the same for every mutant of a
module: only the mutated function differs, and mutmut picks it at call time from
``MUTANT_UNDER_TEST``, never at import or collection.

So the main process configures pytest and collects the module's test selection once, just
before mutmut starts forking (``KeptSession.start``); each child runs its mutant's tests as
items of that session: pytest's own ordering hook (fast_first's order included), its own run
loop with ``-x`` and its own session finish, which tears the session's fixtures down (the
PostgreSQL copies are dropped as before). Nothing of it is shared between children: each
works on its own copy of the process.

What decides a verdict stays pytest's: a child's exit is 1 when a test failed (a failure in
set-up included), 0 when every test passed, 2 when a test stopped the session, 3 when pytest
itself broke (mutmut counts that as killed, as it does for ``pytest.main``): the codes
``pytest.main`` returns. Two checks guard against this runner deciding in
pytest's place, each at every start: the fastest test must pass without a mutant, and the
fastest tests that reach a mutated function must fail under mutmut's forced failure. A mutant
whose tests are not all in the kept collection runs the old way, with ``pytest.main``;
``MUTATION_KEPT_SESSION=0`` runs every mutant that way (to compare: the scores must not move).
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Iterable
from typing import Any

import pytest
from _pytest.config import _prepareconfig
from _pytest.main import Session

#: The fastest tests run under the forced failure at each start (``-x``: the first failure ends it).
_VERIFIED = 20


class KeptSession:
    """pytest configured, its session started and the selection collected, in the parent."""

    def __init__(self, config: pytest.Config, session: Session) -> None:
        self.config = config
        self.session = session
        self.items = {item.nodeid: item for item in session.items}
        self._capture = config.pluginmanager.getplugin("capturemanager")

    @classmethod
    def start(cls, args: list[str]) -> KeptSession:
        """Configure pytest with ``args`` and collect, in the working directory's ``mutants``.

        The terminal reporter writes to the null device (as each mutant's ``pytest.main`` did:
        mutmut points the child's stdout there), and the global capture started while
        configuring is stopped again: the parent's own output is mutmut's progress.
        """
        # Open while the session lives: the reporter keeps writing to it in every child.
        null = open(os.devnull, "w")  # noqa: SIM115
        with contextlib.redirect_stdout(null), _in("mutants"):
            config = _prepareconfig(args)
            session = Session.from_config(config)
            session.exitstatus = pytest.ExitCode.OK
            config._do_configure()
            config.hook.pytest_sessionstart(session=session)
            config.hook.pytest_collection(session=session)
            config.pluginmanager.getplugin("capturemanager").stop_global_capturing()
        if session.testsfailed:
            raise RuntimeError(f"mutation: collecting {args} failed")
        return cls(config, session)

    def covers(self, tests: Iterable[str]) -> bool:
        return all(test in self.items for test in tests)

    def run(self, tests: list[str]) -> int:
        """Run ``tests`` (node ids, all collected) in this process: a mutant's forked child."""
        session, hook = self.session, self.config.hook
        with _in("mutants"):
            self._capture.start_global_capturing()
            items = [self.items[test] for test in tests]
            hook.pytest_collection_modifyitems(session=session, config=self.config, items=items)
            session.items = items
            session.testscollected = len(items)
            # The exit codes of pytest.main (``_pytest.main.wrap_session`` and ``_main``).
            try:
                hook.pytest_runtestloop(session=session)
                if session.testsfailed:
                    status = pytest.ExitCode.TESTS_FAILED
                else:
                    status = pytest.ExitCode.OK if items else pytest.ExitCode.NO_TESTS_COLLECTED
            except session.Failed:  # -x: the first failure ends the loop
                status = pytest.ExitCode.TESTS_FAILED
            except (KeyboardInterrupt, pytest.exit.Exception):  # session.Interrupted is one
                status = pytest.ExitCode.INTERRUPTED
            except Exception:  # pytest's own failure
                status = pytest.ExitCode.INTERNAL_ERROR
            session.exitstatus = status
            hook.pytest_sessionfinish(session=session, exitstatus=session.exitstatus)
            return int(session.exitstatus)

    def verify(self, fastest: list[str]) -> None:
        """The fastest test passes without a mutant, and the fastest tests that reach a mutated
        function fail under mutmut's forced failure (one of them is enough: a function whose
        result a test's module keeps may not be called again), each in a forked child: this
        runner reports what pytest decided, not its own error."""
        for mutant, tests, expected in (("", fastest[:1], 0), ("fail", fastest, 1)):
            got = _in_child(lambda mutant=mutant, tests=tests: self._run_as(mutant, tests))
            if got != expected:
                raise RuntimeError(
                    f"mutation: the kept session ran {tests} with MUTANT_UNDER_TEST="
                    f"{mutant!r} and exited {got}, not {expected}"
                )

    def _run_as(self, mutant: str, tests: list[str]) -> int:
        from mutmut.mutation.trampoline import set_mutant_under_test

        set_mutant_under_test(mutant)
        sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 (the child exits)
        return self.run(tests)


def _in_child(run: Any) -> int:
    pid = os.fork()
    if pid == 0:
        try:
            code = run()
        except BaseException:  # anything but a verdict is this runner broken: never a kill
            traceback.print_exc(file=sys.__stderr__)
            code = 99
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@contextlib.contextmanager
def _in(directory: str) -> Any:
    before = os.getcwd()
    os.chdir(directory)
    try:
        yield
    finally:
        os.chdir(before)


def install(mutmut_main: Any) -> None:
    """Make mutmut's fork runner use a kept session, and skip its clean run.

    The clean run: mutmut's pass over the selection that records which test reaches which
    function already runs every test on the unmutated code and stops when one fails; its
    clean run after it ran the same tests again (a whole selection per module).
    """
    make_runner = mutmut_main.get_mutant_runner

    def runner_with_kept_session(*args: Any, **kwargs: Any) -> Any:
        runner = make_runner(*args, **kwargs)
        runner.run_clean_tests = lambda tests: 0
        test_runner = runner.test_runner
        startup = runner.startup
        kept: list[KeptSession] = []

        def start_then_fork() -> None:
            if os.environ.get("MUTATION_KEPT_SESSION") == "0":  # to compare: pytest.main each
                return startup()
            state = mutmut_main.state()
            arguments = [
                "--rootdir=.", "--tb=native", "-x", "-q", "-p", "no:randomly",
                *test_runner._pytest_add_cli_args_test_selection,
                *test_runner._pytest_add_cli_args,
            ]  # fmt: skip
            session = KeptSession.start(arguments)
            # The forced failure needs a test that calls a mutated function.
            reaching = set().union(*state.tests_by_mangled_function_name.values())
            fastest = sorted(
                reaching & session.items.keys(), key=lambda t: state.duration_by_test.get(t, 0.0)
            )
            if fastest:  # else no mutant has a test to run: nothing to keep a session for
                session.verify(fastest[:_VERIFIED])
                kept.append(session)
            startup()

        plain_run = test_runner.run_tests

        def run_tests(*, mutant_name: str | None, tests: Iterable[str]) -> int:
            wanted = list(tests)
            if kept and kept[0].covers(wanted):
                return kept[0].run(wanted)
            return plain_run(mutant_name=mutant_name, tests=wanted)

        runner.startup = start_then_fork
        test_runner.run_tests = run_tests
        return runner

    mutmut_main.get_mutant_runner = runner_with_kept_session
