"""Shared pytest fixtures."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray for the whole session (2 CPUs, no dashboard), shut down at the end.

    ``address="local"`` starts a fresh Ray even when another one runs on this machine.
    """
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def one_torch_thread():
    """Torch on one thread for a module of tiny-model tests (``pytestmark =
    pytest.mark.usefixtures("one_torch_thread")``): tiny models run faster on one thread;
    on a shared 2-core machine two threads spin against each other."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def fresh_plugins():
    """Forget the process's cached plugin managers before and after the test.

    Use it in a test that changes what is installed (fake entry points, ``sys.path``):
    ``get_plugin_manager`` caches one manager per set of plugins, and the test must see
    a fresh one, as must the tests after it.
    """
    from rft.plugins import clear_plugin_cache

    clear_plugin_cache()
    yield
    clear_plugin_cache()
