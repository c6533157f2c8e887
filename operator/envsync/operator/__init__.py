"""The operator process: kopf's handlers (each translates an event into one call and applies
what comes back), and the Prometheus metrics. The only package that imports kopf.

kopf is imported here first, and its handler registry made, without the ``kubernetes``
library. When that library is installed, kopf imports it to recognise its models (which
envsync never hands kopf) and to offer it as a fallback login (envsync has a login handler of
its own), and the import costs 8 MiB of resident memory (``import envsync.operator.handlers``:
75 MiB with it, 67 MiB without).
The library stays installed and importable: ``apiclient.login_with_kubeconfig`` imports it
when envsync runs off-cluster with a kubeconfig.
"""

import sys

_BLOCKED = "kubernetes"
if _BLOCKED not in sys.modules:  # already imported (a test, a host application): nothing saved
    sys.modules[_BLOCKED] = None  # type: ignore[assignment]  # import raises ImportError
    try:
        import kopf

        kopf.get_default_registry()
    finally:
        del sys.modules[_BLOCKED]
