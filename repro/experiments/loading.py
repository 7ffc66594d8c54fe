"""Loading an experiment: YAML files in experiments/ (or any path), --set overrides, validation
whole at load, and errors that name the file and the key path (for a misspelt key, the nearest
valid one).

    experiment = load_experiment("demo", overrides=["evaluation.utility_images=10"])
    experiment.settings.evaluation.pairs_per_image   # 50

Relative paths in an experiment file are relative to its project root: the repository for the
kit's own experiments/, otherwise the folder that holds the file. A run writes under
<project root>/runs/<name> unless `run_dir` or --run-dir says otherwise; `publish_dir` and
`run_dir` must stay inside the project root unless `allow_outside_project: true`.
"""
from __future__ import annotations

import difflib
import re
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from repro.experiments.experiment import Experiment, check_roles
from repro.experiments.schema import EXPERIMENTS_DIR, REPOSITORY, ExperimentSettings, Saliency
from repro.layout import RunLayout
from repro.saliency.params import resolve_params


class ExperimentError(ValueError):
    """An experiment that cannot be used; the message names the file and the key path."""


def list_experiments() -> list[str]:
    return sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.yaml"))


def load_experiment(name_or_path: str | Path, *, run_dir: str | Path | None = None,
                    overrides: list[str] | tuple[str, ...] = ()) -> Experiment:
    """Read, override (`key.path=value`, the value read as YAML) and validate an experiment."""
    path = _experiment_path(name_or_path)
    text = path.read_text()
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ExperimentError(f"{path}: not valid YAML ({_one_line(err)})") from None
    except RecursionError:
        raise ExperimentError(f"{path}: nested too deeply to be an experiment") from None
    if not isinstance(raw, dict):
        raise ExperimentError(f"{path}: expected a mapping at the top level")
    raw.setdefault("name", path.stem)
    for override in overrides:
        _apply_override(raw, override, path)
    _check_alias_expansion(raw, len(text.encode()) + sum(len(o.encode()) for o in overrides), path)
    try:
        settings = ExperimentSettings.model_validate(raw)
    except ValidationError as err:
        raise ExperimentError(_validation_message(err, path)) from None
    project_root = REPOSITORY if path.parent.resolve() == EXPERIMENTS_DIR else path.parent.resolve()
    try:
        experiment = _experiment(settings, path, project_root, run_dir, tuple(overrides))
        check_roles(settings, experiment.models)
        _check_saliency_parameters(settings.saliency)
    except ValueError as err:
        raise ExperimentError(f"{path}: {err}") from None
    return experiment


def _experiment(settings: ExperimentSettings, path: Path, project_root: Path, run_dir,
                overrides: tuple[str, ...]) -> Experiment:
    probe = Experiment(settings.name, path, settings, RunLayout(Path()), project_root)
    if run_dir is not None:        # the command line asked explicitly: anywhere goes
        root = Path(run_dir).expanduser()
    else:
        root = probe.resolve(settings.run_dir or f"runs/{settings.name}")
        _inside_project(root, "run_dir", settings, project_root)
    for key in ("publish_dir", "publish_readme"):
        if getattr(probe, key) is not None:
            _inside_project(getattr(probe, key), key, settings, project_root)
    if probe.publish_readme is not None and probe.publish_dir is None:
        raise ValueError("publish_readme needs a publish_dir: the README's results are written from it")
    return Experiment(settings.name, path, settings, RunLayout(root), project_root, overrides)


def _inside_project(target: Path, key: str, settings: ExperimentSettings, project_root: Path) -> None:
    if settings.allow_outside_project:
        return
    resolved, root = target.resolve(), project_root.resolve()
    if resolved != root and root not in resolved.parents:
        raise ValueError(f"{key} {str(getattr(settings, key, None) or target)!r} is outside the project folder {root}; "
                         f"set allow_outside_project: true if that is what you want")


def _check_saliency_parameters(saliency: Saliency) -> None:
    """Each override names a parameter of its method with a valid value (the presets' checks)."""
    for method, params in saliency.overrides.items():
        try:
            resolve_params(method, saliency.preset, **params)
        except ValueError as err:
            raise ValueError(f"saliency.overrides.{method}: {err}") from None


def _experiment_path(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ExperimentError(f"experiment file not found: {path}")
        return path
    path = EXPERIMENTS_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ExperimentError(f"unknown experiment {str(name_or_path)!r}; known: "
                              f"{', '.join(list_experiments())} (or give a path to a YAML file)")
    return path


# YAML aliases (*name) repeat a block by reference; nested ones multiply ("billion laughs": 500
# bytes that stand for 10^8 values). PyYAML builds them as shared objects, cheaply, but pydantic
# validates every repetition: a file whose aliases expand it beyond this many values per byte
# (plus a floor for small files) is refused before validation. Plain files hold fewer values than bytes.
ALIAS_EXPANSION_PER_BYTE, ALIAS_EXPANSION_FLOOR = 10, 10_000


def _check_alias_expansion(raw: dict, size_bytes: int, path: Path) -> None:
    """ExperimentError when `raw`, its aliases written out, would hold more values than a file of
    `size_bytes` bytes plausibly does, or when an alias holds itself (a structure without end)."""
    counted: dict[int, int] = {}   # id of a mapping or list -> its values, aliases written out
    open_blocks: set[int] = set()

    def values(node) -> int:
        if not isinstance(node, (dict, list)):
            return 1
        if id(node) in counted:
            return counted[id(node)]
        if id(node) in open_blocks:
            raise ExperimentError(f"{path}: an alias refers to a block that holds it (a structure without end)")
        open_blocks.add(id(node))
        items = list(node.keys()) + list(node.values()) if isinstance(node, dict) else node
        counted[id(node)] = 1 + sum(values(item) for item in items)
        open_blocks.discard(id(node))
        return counted[id(node)]

    limit = ALIAS_EXPANSION_FLOOR + ALIAS_EXPANSION_PER_BYTE * size_bytes
    expanded = values(raw)
    if expanded > limit:
        raise ExperimentError(f"{path}: its aliases (*name) expand {size_bytes:,} bytes to {expanded:,} values, "
                              f"more than the {limit:,} an experiment of that size may hold; refused before validation")


def _apply_override(raw: dict, override: str, path: Path) -> None:
    """`a.b.c=value`: set raw[a][b][c] to the value read as YAML (so 5 is a number, [x, y] a list)."""
    key, sep, text = override.partition("=")
    if not sep or not key.strip():
        raise ExperimentError(f"--set {override!r}: expected KEY.PATH=VALUE, e.g. evaluation.utility_images=10")
    try:
        value = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError) as err:
        raise ExperimentError(f"--set {override!r}: the value is not valid YAML ({_one_line(err)})") from None
    parts = key.strip().split(".")
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ExperimentError(f"--set {override!r}: {'.'.join(parts[:i + 1])} is not a section")
        node = child
    node[parts[-1]] = value


def _validation_message(error: ValidationError, path: Path) -> str:
    lines = []
    for item in error.errors():
        location = _location(item["loc"])
        if item["type"] == "extra_forbidden":
            lines.append(f"unknown key {location}{_suggestion(item['loc'])}")
        elif item["type"] == "missing":
            lines.append(f"{location}: required but missing")
        else:
            lines.append(f"{location}: {item['msg'][0].lower()}{item['msg'][1:]}, got {item.get('input')!r}"
                         if location else item["msg"].removeprefix("Value error, "))
    unique = list(dict.fromkeys(lines))
    # A union reports one error per member; the first says enough.
    return f"{path}: " + "; ".join(line.replace("Value error, ", "") for line in unique[:3]) + (
        f" (and {len(unique) - 3} more)" if len(unique) > 3 else "")


def _location(loc: tuple) -> str:
    """('saliency', 'overrides', 'SG', 'nsamples') -> saliency.overrides.SG.nsamples; the
    union-member tags pydantic appends ('literal[...]', 'int', 'SplitFractions') are dropped."""
    parts = []
    for part in loc:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif re.match(r"^(literal\[|function-|[A-Z]\w*$|int$|str$|float$|bool$|list\[|dict\[|nullable)", part):
            continue
        else:
            parts.append(("." if parts else "") + part)
    return "".join(parts)


def _suggestion(loc: tuple) -> str:
    """'; did you mean X?' for a misspelt key, from the valid keys at that place of the schema."""
    model, valid = ExperimentSettings, None
    for part in loc[:-1]:
        if isinstance(part, int) or model is None:
            return ""
        field = model.model_fields.get(part)
        model = _section_type(field.annotation) if field else None
    if model is not None:
        valid = list(model.model_fields)
    matches = difflib.get_close_matches(str(loc[-1]), valid or [], n=1, cutoff=0.6)
    if matches:
        return f"; did you mean {'.'.join(map(str, loc[:-1] + (matches[0],)))}?"
    return f"; valid keys here: {', '.join(valid)}" if valid else ""


def _section_type(annotation):
    """The _Section class inside an annotation such as Optional[Models]."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _section_type(arg)
        if found is not None:
            return found
    return None


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())
