"""The bundled solvers. Importing this package registers every module in it.

Each module registers its functions with :func:`sparsesel.register_solver`;
third-party packages add solvers through the ``sparsesel.solvers`` entry-point
group instead.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")
