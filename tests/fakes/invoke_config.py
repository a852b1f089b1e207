"""invoke's runtime configuration for the suite: every task talks to the fake Modal (tests/fakes/modal_fake.py).

The one test-only seam of the Modal boundary, and an explicit one: stages/runner.make_remote takes the Remote
factory from the task context's configuration key `remote`, and invoke loads this file as its runtime
configuration (INVOKE_RUNTIME_CONFIG, invoke's own variable; tests/conftest.FAKE_MODAL sets it). Without it, a
command talks to Modal through ModalRemote, as the wire tests' do.
"""

from tests.fakes.modal_fake import FakeModal as remote  # noqa: F401  (the configuration's value: a factory)
