"""The README and the docs cannot drift from the code: every command line they show names a script that
exists and flags it accepts (checked against its `--help`), every `--config` loads with its schema and
the line's overrides, every shipped YAML loads, and every relative link and anchor resolves."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import importlib.util
import io
import itertools
import re
import shlex
import sys
import typing
from functools import cache
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT
from training.core.config import load_config
from training.core.errors import ConfigError

README = REPO_ROOT / "README.md"
DOCS = [README, *sorted((REPO_ROOT / "docs").glob("*.md"))]
LINKED = [*DOCS, REPO_ROOT / "CHANGELOG.md"]
MAX_README_LINES = 300
MAIN_COMMAND = "pip install -r requirements.txt && python training/pipeline.py --config experiments/pipeline_demo.yaml"
TEST_COMMAND = "pip install -r requirements-dev.txt && python -m pytest tests"
ROUND_WORDING = re.compile(r"this stop|stops? ago|at this round|this round|last stop|at that stop", re.IGNORECASE)

# Which schema a config-taking script reads its --config with (module path, class name).
SCHEMAS = {
    "training/train_dcgan.py": ("training.gan.config", "GANConfig"),
    "training/generate_samples.py": ("training.gan.config", "GANConfig"),
    "training/train_classifier.py": ("training.classify.config", "ClassifierConfig"),
    "training/train_sgan.py": ("training.sgan.config", "SGANConfig"),
    "training/pipeline.py": ("training.study.config", "PipelineConfig"),
    "training/sweep.py": ("training.analysis.synthetic_amount", "SweepConfig"),
}
# Scripts whose positional `key=value` words are config overrides.
TAKES_OVERRIDES = {"training/train_dcgan.py", "training/train_classifier.py", "training/train_sgan.py",
                   "training/pipeline.py", "training/sweep.py"}
OVERRIDE = re.compile(r"^[a-z_]+\.[a-z_.]+=")


def schema(name: str) -> type:
    module, cls = SCHEMAS[name]
    return getattr(importlib.import_module(module), cls)


def schema_of_yaml(path: Path) -> type:
    """The schema of a shipped experiments/*.yaml, by its name."""
    for prefix, script in (("pipeline_", "training/pipeline.py"), ("classifier_", "training/train_classifier.py"),
                           ("sgan_", "training/train_sgan.py"), ("sweep_", "training/sweep.py")):
        if path.name.startswith(prefix):
            return schema(script)
    return schema("training/train_dcgan.py")


# --- reading the markdown --------------------------------------------------------------------------------

FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(text)]


def without_fences(text: str) -> str:
    return FENCE.sub("", text)


def expand_braces(word: str) -> list[str]:
    """Shell brace expansion of `a{b,c}d` (several groups, not nested)."""
    groups = re.findall(r"\{([^{}]*,[^{}]*)\}", word)
    if not groups:
        return [word]
    template = re.sub(r"\{[^{}]*,[^{}]*\}", "{}", word.replace("{}", "\0"))
    return [template.format(*choice).replace("\0", "{}") for choice in itertools.product(*(g.split(",") for g in groups))]


def logical_lines(block: str) -> list[str]:
    """A bash block's command lines: continuations joined, comments dropped, `&&` chains split."""
    lines = []
    for line in block.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        for is_sep, group in itertools.groupby(words, key=lambda w: w == "&&"):
            if not is_sep:
                lines.append(list(group))
    return [words for words in lines if words]


def script_call(words: list[str]) -> tuple[str, list[str]] | None:
    """(script path, its arguments) of a `python <script>.py ...` or `torchrun ... <script>.py ...` line."""
    if not words or words[0] not in ("python", "python3", "torchrun"):
        return None
    if words[0] != "torchrun" and words[1:2] == ["-m"]:
        return None                                          # python -m pytest / pip: not a project script
    for i, word in enumerate(words[1:], start=1):
        if word.endswith(".py"):
            return word, words[i + 1:]
        if words[0] != "torchrun":
            return None
    return None


def commands(path: Path) -> list[tuple[str, str, list[str]]]:
    """(where, script, arguments) of every command: fenced bash blocks, and inline code spans that start
    with `python ` or `torchrun ` (the user guide and the reference write commands inline)."""
    text = path.read_text()
    found = []
    for lang, block in fenced_blocks(text):
        if lang in ("bash", "sh", "shell"):
            for words in logical_lines(block):
                if (call := script_call(words)) is not None:
                    found.append((f"{path.name}: {' '.join(words)}", *call))
    for span in re.findall(r"`([^`]+)`", without_fences(text)):
        span = " ".join(span.split())
        if span.startswith(("python ", "torchrun ")):
            words = [w.strip("[]") for w in shlex.split(span)]
            if (call := script_call(words)) is not None:
                found.append((f"{path.name}: {span}", *call))
    return found


def example_yaml(path: Path) -> dict[str, str]:
    """YAML blocks a doc shows as files to copy: their first line is `# <name>.yaml`."""
    out = {}
    for lang, block in fenced_blocks(path.read_text()):
        first = block.splitlines()[0].strip() if block.strip() else ""
        if lang == "yaml" and re.fullmatch(r"#\s*[\w.-]+\.yaml", first):
            out[first.lstrip("#").strip()] = block
    return out


ALL_COMMANDS = [c for doc in DOCS for c in commands(doc)]


# --- the scripts' --help ---------------------------------------------------------------------------------

@cache
def help_text(script: str) -> str:
    """`python <script> --help`, run in-process: training/ and quality/ scripts as their modules, bench/
    scripts from their file (they read sys.argv)."""
    path = REPO_ROOT / script
    out = io.StringIO()
    argv, search_path = sys.argv, list(sys.path)
    try:
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_info:
            if path.parent.name in ("training", "quality"):
                module = importlib.import_module(f"{path.parent.name}.{path.stem}")
                module.main(["--help"])
            else:
                sys.path.insert(0, str(path.parent))          # as `python bench/x.py`: its folder first
                spec = importlib.util.spec_from_file_location(f"_readme_{path.parent.name}_{path.stem}", path)
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
                sys.argv = [str(path), "--help"]
                module.main()
    finally:
        sys.argv, sys.path[:] = argv, search_path
    assert exit_info.value.code in (0, None), f"{script} --help exited with {exit_info.value.code}"
    return out.getvalue()


def flags(args: list[str]) -> list[str]:
    """The `--flags` of a command line, underscored (the scripts accept the dashed spelling too)."""
    names = [a.split("=", 1)[0] for a in args if a.startswith("--")]
    return ["--" + n[2:].replace("-", "_") for n in names]


# --- tests -----------------------------------------------------------------------------------------------

def test_readme_is_short_and_speaks_of_versions_and_commits():
    text = README.read_text()
    assert len(text.splitlines()) <= MAX_README_LINES
    for doc in LINKED:
        hits = ROUND_WORDING.findall(doc.read_text())
        assert not hits, f"{doc.name}: development-round wording {hits}"


def test_readme_has_the_two_commands():
    blocks = [b for lang, b in fenced_blocks(README.read_text()) if lang == "bash"]
    lines = {line.strip() for b in blocks for line in b.splitlines()}
    assert MAIN_COMMAND in lines and TEST_COMMAND in lines


def test_docs_show_commands():
    """The parser finds the commands (a broken parser would make the tests below pass vacuously)."""
    readme = [c for c in ALL_COMMANDS if c[0].startswith("README.md")]
    assert len(readme) >= 15
    assert {"training/pipeline.py", "training/prepare_data.py", "training/train_dcgan.py", "quality/run_qa.py",
            "training/compare.py"} <= {script for _, script, _ in readme}


@pytest.mark.parametrize("script", sorted({script for _, script, _ in ALL_COMMANDS}))
def test_every_script_in_the_docs_exists_and_has_help(script):
    assert (REPO_ROOT / script).is_file(), f"{script} does not exist"
    assert "usage:" in help_text(script)


@pytest.mark.parametrize("where, script, args", ALL_COMMANDS, ids=[c[0][:120] for c in ALL_COMMANDS])
def test_every_flag_in_the_docs_is_accepted(where, script, args):
    if not (REPO_ROOT / script).is_file():
        pytest.fail(f"{where}: {script} does not exist")
    text = help_text(script)
    unknown = [f for f in flags(args) if not re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", text)]
    assert not unknown, f"{where}: {script} does not take {unknown}"


def config_lines():
    for where, script, args in ALL_COMMANDS:
        if script not in SCHEMAS or "--config" not in args:
            continue
        value = args[args.index("--config") + 1]
        if value.endswith(".yaml") and not re.search(r"[<>]|\.\.\.", value):
            overrides = [a for a in args if OVERRIDE.match(a)] if script in TAKES_OVERRIDES else []
            for path in expand_braces(value):
                yield pytest.param(where, script, path, overrides, id=f"{script} {path}")


@pytest.mark.parametrize("where, script, path, overrides", list(config_lines()))
def test_every_config_in_the_docs_loads_with_its_schema(where, script, path, overrides, tmp_path):
    """The YAML exists (in the repository, or as a `# name.yaml` block of the same doc) and loads, with the
    line's `key=value` overrides; a pipeline's stage configs load with their overrides too."""
    config_path = REPO_ROOT / path
    if not config_path.is_file():
        doc = {d.name: d for d in DOCS}[where.split(":", 1)[0]]
        examples = example_yaml(doc)
        assert Path(path).name in examples, f"{where}: {path} is neither in the repository nor shown in {doc.name}"
        config_path = tmp_path / Path(path).name
        config_path.write_text(examples[Path(path).name])
    config = load_config(schema(script), config_path, overrides)
    if script == "training/pipeline.py":
        check_pipeline_stages(config)


def check_pipeline_stages(config) -> None:
    """The stage configs a pipeline names load with its overrides (and its class roles, when it sets them)."""
    from training.study.preflight import classifier_overrides, gan_overrides

    load_config(schema("training/train_dcgan.py"), REPO_ROOT / config.gan.config, gan_overrides(config))
    arms = [arm.config for arm in config.classifiers.parsed()] + ([config.search.arm] if config.search.enabled else [])
    for arm in arms:
        load_config(schema("training/train_classifier.py"), REPO_ROOT / arm, classifier_overrides(config))


@pytest.mark.parametrize("path", sorted((REPO_ROOT / "experiments").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_yaml_loads(path):
    config = load_config(schema_of_yaml(path), path)
    if path.name.startswith("pipeline_"):
        check_pipeline_stages(config)


def test_a_wrong_key_in_a_doc_config_would_be_caught():
    """The check above is not vacuous: an override the schema does not know is an error."""
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(schema("training/train_dcgan.py"), REPO_ROOT / "experiments/demo_gan.yaml", ["data.chanels=1"])


def schema_keys(cls: type, prefix: str = "") -> set[str]:
    hints = typing.get_type_hints(cls)
    keys = {prefix + name for name in getattr(cls, "RETIRED", {})}     # removed: the history may name them
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            keys |= schema_keys(hints[f.name], f"{prefix}{f.name}.")
        else:
            keys.add(prefix + f.name)
    return keys


def test_every_config_key_the_docs_name_exists():
    """`section.key` in the docs (tables, prose, examples) is a key of one of the schemas."""
    known = set().union(*(schema_keys(schema(script)) for script in SCHEMAS))
    sections = sorted({k.split(".")[0] for k in known})
    pattern = re.compile(rf"(?<![\w/.-])((?:{'|'.join(sections)})\.[a-z_]+(?:\.[a-z_]+)?)(?![\w/-])")
    files = re.compile(r"\.(json|jsonl|py|yaml|md|png|csv|pth|txt)$")
    unknown = sorted({f"{doc.name}: {key}" for doc in LINKED for key in pattern.findall(doc.read_text())
                      if key not in known and not files.search(key) and not any(k.startswith(key + ".") for k in known)})
    assert not unknown, f"config keys the schemas do not have: {unknown}"


def test_every_flag_the_docs_name_exists():
    """A `--flag` named anywhere in the docs, in a command or in prose, is taken by some script."""
    scripts = sorted(p.relative_to(REPO_ROOT).as_posix() for top in ("training", "quality", "bench")
                     for p in (REPO_ROOT / top).glob("*.py") if p.name != "__init__.py")
    helps = "\n".join(help_text(script) for script in scripts)
    named = {f"{doc.name}: {f}" for doc in LINKED for f in re.findall(r"(?<![\w-])--[a-z][a-z_-]*", doc.read_text())}
    unknown = sorted(n for n in named
                     if not re.search(rf"(?<![\w-]){re.escape(flags([n.split(': ')[1]])[0])}(?![\w-])", helps))
    assert not unknown, f"flags no script takes: {unknown}"


# --- links -----------------------------------------------------------------------------------------------

def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in without_fences(path.read_text()).splitlines():
        if m := re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line):
            base = slug(m.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            out.add(base if count == 0 else f"{base}-{count}")
    return frozenset(out)


def test_slug_matches_github():
    assert slug("Defaults: FID/KID evaluation") == "defaults-fidkid-evaluation"
    assert slug("Semi-supervised K+1 GAN") == "semi-supervised-k1-gan"
    assert (slug("The demo study (`python training/pipeline.py --config experiments/pipeline_demo.yaml`)")
            == "the-demo-study-python-trainingpipelinepy---config-experimentspipeline_demoyaml")


@pytest.mark.parametrize("doc", LINKED, ids=lambda p: p.name)
def test_every_relative_link_and_anchor_resolves(doc):
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", without_fences(doc.read_text())):
        if re.match(r"[a-z]+:", target):
            continue                                          # http(s), mailto
        file_part, _, anchor = target.partition("#")
        path = (doc.parent / file_part).resolve() if file_part else doc
        if not path.exists():
            broken.append(target)
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(target)
    assert not broken, f"{doc.name}: broken links {broken}"
