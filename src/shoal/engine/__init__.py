"""Running jobs: the engine, and the blocking helper built on it."""

from shoal.engine.blocking import fetch, map
from shoal.engine.engine import Engine
from shoal.engine.loop import loop_factory
from shoal.engine.run import Requests
from shoal.engine.tasks import Handler, Task

__all__ = ["Engine", "Handler", "Requests", "Task", "fetch", "loop_factory", "map"]
