import pytest

from tests.helpers import run_script
from training.core.cli import OUTPUT_DIR_FLAGS, Parser, seed_arg
from training.core.errors import ConfigError, UserError
from training.core.names import check_plain_name
from training.core.registry import Registry


def parser() -> Parser:
    p = Parser("test")
    p.add_argument("--num_samples", type=int)
    p.add_argument(*OUTPUT_DIR_FLAGS, dest="output_dir")
    p.add_argument("--dry_run", action="store_true")
    return p


@pytest.mark.parametrize("argv", [
    ["--num_samples", "3", "--output_dir", "o", "--dry_run"],
    ["--num-samples", "3", "--output-dir", "o", "--dry-run"],
    ["--num-samples=3", "--out", "o", "--dry-run"],
    ["--num_samples=3", "--out_dir", "o", "--dry_run"],
])
def test_underscore_flags_accept_the_dashed_and_old_output_spellings(argv):
    args = parser().parse_args(argv)
    assert (args.num_samples, args.output_dir, args.dry_run) == (3, "o", True)


@pytest.mark.parametrize("script", ["training/prepare_data.py", "training/compare.py", "training/generate_samples.py",
                                    "quality/run_qa.py", "quality/review.py"])
def test_every_seed_flag_refuses_a_negative_seed_before_any_work(script, capsys):
    # numpy's generators refuse a negative seed, which would otherwise surface as a traceback mid-run.
    result = run_script(capsys, script, "--seed", "-1")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: --seed must be >= 0 (a whole number up to 4294967295), got '-1'"


def test_seed_arg():
    assert seed_arg("0") == 0 and seed_arg("12") == 12
    for bad in ("-1", "1.5", "x", "4294967296"):
        with pytest.raises(UserError, match="--seed must be >= 0"):
            seed_arg(bad)


def test_dashed_words_that_are_not_our_flags_are_left_alone():
    args, unknown = parser().parse_known_args(["--num-samples", "2", "--not-ours", "x-y"])
    assert args.num_samples == 2 and unknown == ["--not-ours", "x-y"]


@pytest.mark.parametrize("name", ["demo_gan", "bm-1", "run.v2", "a+b", "x=1"])
def test_plain_names_pass(name):
    assert check_plain_name(name, "output.name") == name


@pytest.mark.parametrize("name", ["", ".", "..", "../x", "a/b", "/abs", ".hidden", "a\\b", "x" * 200, "a\nb"])
def test_names_that_leave_their_folder_or_hide_are_refused(name):
    with pytest.raises(UserError, match="output.name must be a plain name"):
        check_plain_name(name, "output.name")


def test_registry_registers_by_decorator_and_names_the_known_on_a_miss():
    things = Registry("widget", "model.widget")

    @things.register("a")
    def a():
        return 1

    assert things["a"] is a
    with pytest.raises(ConfigError, match="'model.widget': unknown widget 'b' \\(known: a\\)"):
        things["b"]
    with pytest.raises(ValueError):
        things.register("a")(a)
