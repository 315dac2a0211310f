"""Network adapters: everything the pipeline needs to know about one network, in one object.

The pipeline (compression, training, evaluation, the commands) never branches on a network's
name or class: it asks the network's adapter

* how to make the network's input from a batch (:meth:`NetworkAdapter.network_input`: the image,
  with the Harmonizer's foreground mask appended as a fourth channel) and which output is the image
  (:meth:`~NetworkAdapter.image`: TSHRNet's dict entry ``diffuse_tc``);
* the size multiple of its inputs, how to restore an image of any size, an example input;
* the layers compression must leave alone (:attr:`~NetworkAdapter.compress_exclude`), its own
  channel pruner if it has one, its tasks (the first is the default) and its training recipe;
* its factory and configuration (:meth:`~NetworkAdapter.build`, :meth:`~NetworkAdapter.config_of`)
  and the reader of its official checkpoint layouts.

Built-in networks
-----------------
Every module of the package :mod:`sparsesel.nets.adapters` is one built-in network: its file name
is the network's name and its ``ADAPTER`` the adapter (a :class:`BuiltinAdapter`). Adding a
network is its module in :mod:`sparsesel.nets` plus one adapter module there (and tests);
:func:`net_names` lists the package's modules without importing them.

Any other network
-----------------
A user's ``nn.Module`` that maps ``(B, 3, H, W)`` images to images needs no registration: it gets
a :class:`FactoryAdapter`, whose defaults are those of :class:`NetworkAdapter` (input = the image,
output = the tensor the module returns, size multiple from its ``size_multiple`` or ``multiple``
attribute, else 1) and whose factory is ``"package.module:function"`` called with keyword
arguments (the network's configuration in a checkpoint). Building it imports that module — it
runs the user's code — so loading such a checkpoint needs an explicit opt-in (``trust_code``).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import pkgutil
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

    from sparsesel.training.losses import TrainingRecipe

__all__ = [
    "FACTORY_PATTERN",
    "PRESETS",
    "BuiltinAdapter",
    "FactoryAdapter",
    "NetworkAdapter",
    "adapter_for",
    "get_adapter",
    "is_factory_spec",
    "net_names",
]

#: ``package.module:function`` (a network factory named on the command line or in a checkpoint)
FACTORY_PATTERN = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")
#: configuration presets of the built-in networks
PRESETS = ("small", "paper")
#: the attribute a network built by a factory carries: ``{"net": "package.module:function", "config": {...}}``
FACTORY_RECORD = "sparsesel_factory"
_ADAPTERS_FOLDER = Path(__file__).with_name("adapters")


def _import_path(path: str) -> Any:
    """The object ``"package.module:attribute.attribute"`` names (imports the module)."""
    module_name, _, attributes = path.partition(":")
    value: Any = importlib.import_module(module_name)
    for attribute in attributes.split("."):
        value = getattr(value, attribute)
    return value


class NetworkAdapter:
    """How the pipeline runs one network; the defaults fit any module mapping an image to an image.

    Attributes
    ----------
    name : str
        The network's name (built-ins) or factory (``"package.module:function"``).
    description : str
        One line.
    tasks : tuple of str
        Degradations of :mod:`sparsesel.data.datasets` it learns; the first is its default task
        (calibration, fine-tuning and evaluation data of ``compress``).
    compress_exclude : tuple of str
        Layer names or ``fnmatch`` patterns compression leaves untouched.
    takes_mask : bool
        The network takes ``(image, mask)``; the pipeline passes one tensor with the mask as a
        fourth channel.
    image_key : str or None
        The entry of a dict output that is the final image (``None``: the output is the image).
    channel_pruner : str or None
        ``"module:function"`` of the network's own structured channel pruning
        ``f(model, budget_params) -> (network, info)``; ``None``: Torch-Pruning (slow to trace, so
        ``compress`` runs that baseline only when asked with ``--method magnitude``).
    """

    name: str = "module"
    description: str = "an nn.Module mapping (B, 3, H, W) images in [0, 1] to images"
    tasks: tuple[str, ...] = ("lowlight", "haze", "blur")
    compress_exclude: tuple[str, ...] = ()
    takes_mask: bool = False
    image_key: str | None = None
    channel_pruner: str | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    # -- factory and configuration --------------------------------------
    def build(self, config: Any = None, **overrides: Any) -> nn.Module:
        """A new network of ``config`` (untrained)."""
        raise TypeError(f"{self.name} has no factory: it cannot be built from a configuration")

    def config_of(self, model: nn.Module) -> dict[str, Any]:
        """The configuration that :meth:`build` takes to rebuild ``model``'s base network, as plain data."""
        return {}

    def upgrade_config(self, config: dict[str, Any], file_format: str) -> dict[str, Any]:
        """The configuration of a file in an earlier ``file_format`` as this version reads it."""
        return config

    # -- one tensor in, one image out --------------------------------------
    def network_input(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The pipeline's input tensor for ``batch``: ``batch["input"]`` ``(B, 3, H, W)``, with
        ``batch["mask"]`` ``(B, 1, H, W)`` appended as a fourth channel when :attr:`takes_mask`.

        Raises
        ------
        ValueError
            The network takes a mask and the batch has none.
        """
        import torch

        x = batch["input"]
        if not self.takes_mask:
            return x
        if batch.get("mask") is None:
            raise ValueError(f"{self.name} takes a foreground mask, but the data has none (use its task {self.tasks[0]!r})")
        return torch.cat([x, batch["mask"].to(x.dtype)], dim=1)

    def input_channels(self) -> int:
        """Channels of the pipeline's input tensor (3, or 4 with the mask)."""
        return 4 if self.takes_mask else 3

    def image(self, output: Any) -> torch.Tensor:
        """The final image in the network's raw ``output``.

        Raises
        ------
        ValueError
            A dict output without the :attr:`image_key` entry (or any dict when it is ``None``).
        """
        if isinstance(output, dict):
            if self.image_key is None or self.image_key not in output:
                raise ValueError(f"{self.name} returns a dict {sorted(output)}; its adapter must name the image entry "
                                 f"(image_key={self.image_key!r})")
            return output[self.image_key]
        return output

    def output_image(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The final image ``(B, 3, H, W)`` of ``model`` for the pipeline's input ``x`` (sides multiples
        of :meth:`size_multiple`).

        Raises
        ------
        ValueError
            A network that takes a mask gets no fourth channel.
        """
        if self.takes_mask:
            if x.shape[1] != 4:
                raise ValueError(f"{self.name} takes an image and a mask: expected 4 input channels, got {x.shape[1]}")
            return self.image(model(x[:, :3], x[:, 3:4]))
        return self.image(model(x))

    def size_multiple(self, model: nn.Module) -> int:
        """Input sides must be multiples of this: the network's ``size_multiple`` or ``multiple``
        attribute (a positive int), else 1."""
        for attribute in ("size_multiple", "multiple"):
            value = getattr(model, attribute, None)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
                return value
        return 1

    def restore(self, model: nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The final image for a batch of any size: reflect-padded to the size multiple, run, cropped back.

        Gradients flow (wrap in ``torch.no_grad()`` for inference).
        """
        from sparsesel.nets.layers import reflect_pad_to_multiple

        x = self.network_input(batch)
        padded, (height, width) = reflect_pad_to_multiple(x, self.size_multiple(model))
        return self.output_image(model, padded)[..., :height, :width]

    def example_input(self, model: nn.Module, height: int, width: int, *, seed: int = 0) -> torch.Tensor:
        """A random ``(1, C, height, width)`` pipeline input (a mask channel of zeros and ones when
        :attr:`takes_mask`) on the model's device and dtype."""
        import torch

        parameter = next(model.parameters(), None)
        generator = torch.Generator().manual_seed(int(seed))
        x = torch.rand(1, 3, int(height), int(width), generator=generator)
        if self.takes_mask:
            mask = torch.zeros(1, 1, int(height), int(width))
            mask[..., height // 4: 3 * height // 4, width // 4: 3 * width // 4] = 1.0
            x = torch.cat([x, mask], dim=1)
        if parameter is None:
            return x
        return x.to(dtype=parameter.dtype, device=parameter.device)

    # -- training -----------------------------------------------------------
    def training_recipe(self) -> TrainingRecipe:
        """How the network is trained: by default UHDformer's optimizer and L1 + 0.1·FFT-L1 on the image."""
        from sparsesel.training.losses import restoration_recipe

        return restoration_recipe(self, source="sparsesel default: UHDformer's optimizer and loss on the image output")

    # -- official checkpoint layouts ------------------------------------------
    def read_official(self, payload: Any, name: str) -> nn.Module | None:
        """The network held by an already read file in this network's official layout, else ``None``.

        Raises ``ValueError`` (naming ``name``) for a file of that layout that does not fit.
        """
        return None

    def read_official_folder(self, folder: Path) -> nn.Module | None:
        """The network held by a folder in this network's official layout (several files), else ``None``."""
        return None


class BuiltinAdapter(NetworkAdapter):
    """A network of :mod:`sparsesel.nets`: its class and config dataclass named as ``"module:Class"``
    (imported on first use), built from a preset, a dict of config fields or the config object."""

    #: ``"module:Class"`` of the network
    model_class: str = ""
    #: ``"module:Class"`` of its frozen config dataclass (``small()``/``paper()`` presets, ``from_dict``)
    config_class: str = ""
    #: presets the config class lacks, as field dicts
    fallback_presets: Mapping[str, Mapping[str, Any]] = {}

    def classes(self) -> tuple[type, type]:
        """``(network class, config class)``, imported now."""
        return _import_path(self.model_class), _import_path(self.config_class)

    def config_fields(self) -> tuple[str, ...]:
        """The names of the config's fields."""
        return tuple(f.name for f in dataclasses.fields(self.classes()[1]))

    def make_config(self, config: Any = "small", **overrides: Any) -> Any:
        """The config object of a preset name, a dict of fields or a config object, with ``overrides``."""
        _, config_class = self.classes()
        if isinstance(config, str):
            if config not in PRESETS:
                raise ValueError(f"preset must be one of {PRESETS}, got {config!r}")
            factory = getattr(config_class, config, None)
            if factory is not None:
                config = factory()
            elif config in self.fallback_presets:
                config = self._from_fields(dict(self.fallback_presets[config]))
            else:
                raise ValueError(f"{config_class.__name__} has no {config!r} preset")
        elif isinstance(config, Mapping):
            config = self._from_fields(dict(config))
        elif not isinstance(config, config_class):
            raise TypeError(f"config must be a preset name, a dict or a {config_class.__name__}, got {type(config).__name__}")
        if overrides:
            config = self._from_fields({**self._fields_of(config), **overrides})
        return config

    def _from_fields(self, data: dict[str, Any]) -> Any:
        _, config_class = self.classes()
        fields = set(self.config_fields())
        unknown = sorted(set(data) - fields)
        if unknown:
            raise ValueError(f"unknown {config_class.__name__} options {unknown}; valid: {sorted(fields)}")
        return config_class(**data)

    @staticmethod
    def _fields_of(config: Any) -> dict[str, Any]:
        return {key: list(value) if isinstance(value, tuple) else value for key, value in dataclasses.asdict(config).items()}

    def build(self, config: Any = "small", **overrides: Any) -> nn.Module:
        model_class, _ = self.classes()
        return model_class(self.make_config("small" if config is None else config, **overrides))

    def config_of(self, model: nn.Module) -> dict[str, Any]:
        config = getattr(model, "config", None)
        if not dataclasses.is_dataclass(config):
            raise TypeError(f"expected a {self.name} with a dataclass .config, got {type(model).__name__}")
        return self._fields_of(config)

    def owns(self, model: nn.Module) -> bool:
        """Whether ``model`` is exactly this network's class."""
        cls = type(model)
        return f"{cls.__module__}:{cls.__qualname__}" == self.model_class


class FactoryAdapter(NetworkAdapter):
    """A user's network, built by ``factory(**config)`` with ``factory`` named ``"package.module:function"``.

    Parameters
    ----------
    factory : str or None
        The factory; ``None`` for a module that was not built from one (it runs through the pipeline,
        but cannot be saved until a factory is named).
    """

    def __init__(self, factory: str | None) -> None:
        if factory is not None and not is_factory_spec(factory):
            raise ValueError(f"a network factory is named 'package.module:function', got {factory!r}")
        self.factory = factory
        self.name = factory or "module"

    def build(self, config: Any = None, **overrides: Any) -> nn.Module:
        """``factory(**config, **overrides)``: imports the factory's module (runs its code).

        Raises
        ------
        ValueError
            The module cannot be imported, has no such function, or the call fails.
        TypeError
            The factory returns something other than an ``nn.Module``.
        """
        from torch import nn

        if self.factory is None:
            raise ValueError("this network was not built from a factory; name one: net='package.module:function'")
        kwargs = {**dict(config or {}), **overrides}
        module_name, _, function = self.factory.partition(":")
        try:
            target = _import_path(self.factory)
        except ImportError as exc:
            raise ValueError(f"network factory {self.factory!r}: cannot import module {module_name!r} ({exc})") from None
        except AttributeError:
            raise ValueError(f"network factory {self.factory!r}: module {module_name!r} has no {function!r}") from None
        if not callable(target):
            raise ValueError(f"network factory {self.factory!r}: {function!r} is not callable")
        try:
            model = target(**kwargs)
        except Exception as exc:  # noqa: BLE001 - the user's factory failed: say which and how
            raise ValueError(f"network factory {self.factory!r}: calling {function}(**{kwargs!r}) failed: "
                             f"{type(exc).__name__}: {exc}") from None
        if not isinstance(model, nn.Module):
            raise TypeError(f"network factory {self.factory!r} returned a {type(model).__name__}, not a torch nn.Module")
        setattr(model, FACTORY_RECORD, {"net": self.factory, "config": kwargs})
        return model

    def config_of(self, model: nn.Module) -> dict[str, Any]:
        record = getattr(model, FACTORY_RECORD, None)
        return dict(record["config"]) if isinstance(record, dict) and isinstance(record.get("config"), dict) else {}


def is_factory_spec(net: Any) -> bool:
    """Whether ``net`` names a factory ``"package.module:function"`` (not a built-in network)."""
    return isinstance(net, str) and bool(FACTORY_PATTERN.match(net))


@functools.lru_cache(maxsize=1)
def net_names() -> tuple[str, ...]:
    """Names of the built-in networks: the modules of :mod:`sparsesel.nets.adapters` (none is imported)."""
    return tuple(sorted(m.name for m in pkgutil.iter_modules([str(_ADAPTERS_FOLDER)]) if not m.name.startswith("_")))


@functools.lru_cache(maxsize=1)
def _builtin_classes() -> dict[str, NetworkAdapter]:
    """``{"module:Class": adapter}`` of the built-in networks (imports their adapter modules, not the networks)."""
    table = {}
    for name in net_names():
        adapter = get_adapter(name)
        if isinstance(adapter, BuiltinAdapter):
            table[adapter.model_class] = adapter
    return table


def get_adapter(net: str) -> NetworkAdapter:
    """The adapter of a built-in network name, or a :class:`FactoryAdapter` for ``"package.module:function"``
    (nothing of the user's is imported here).

    Raises
    ------
    ValueError
        Neither a built-in name (those are listed) nor a factory.
    """
    if is_factory_spec(net):
        return FactoryAdapter(net)
    if not isinstance(net, str) or net not in net_names():
        raise ValueError(f"unknown network {net!r}; choose one of {net_names()} or a factory 'package.module:function'")
    adapter = importlib.import_module(f"sparsesel.nets.adapters.{net}").ADAPTER
    if not isinstance(adapter, NetworkAdapter) or adapter.name != net:
        raise TypeError(f"sparsesel.nets.adapters.{net}.ADAPTER must be a NetworkAdapter named {net!r}")
    return adapter


def adapter_for(model: nn.Module) -> NetworkAdapter:
    """The adapter of a network object: the built-in whose class it is, the factory it was built by,
    else a :class:`FactoryAdapter` naming its class when the class can be imported by that path
    (``"module:Class"``, called without arguments to rebuild it), else one without a factory.
    A ``DataParallel`` / ``DistributedDataParallel`` wrapper gets the adapter of the network it wraps."""
    from torch import nn

    if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        model = model.module  # the wrapped network's adapter (the wrapper forwards the calls)
    record = getattr(model, FACTORY_RECORD, None)
    if isinstance(record, dict) and is_factory_spec(record.get("net")):
        return FactoryAdapter(record["net"])
    cls = type(model)
    path = f"{cls.__module__}:{cls.__qualname__}"
    builtin = _builtin_classes().get(path)
    if builtin is not None:
        return builtin
    return FactoryAdapter(path if is_factory_spec(path) and cls.__module__ != "__main__" else None)
