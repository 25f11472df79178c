"""The package's public names load torch on first use only, and stay the functions they name."""
import subprocess
import sys

import pytest


def _python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_importing_digits_and_asking_for_help_do_not_import_torch():
    assert _python("import sys, digits; print('torch' in sys.modules)") == "False"
    code = ("import sys\nfrom digits.cli import main\ntry:\n    main(['--version'])\nexcept SystemExit:\n"
            "    pass\nprint('torch' in sys.modules)")
    assert _python(code).endswith("False")


@pytest.mark.slow
def test_public_names_are_the_functions_even_after_their_submodules_are_imported():
    code = ("import digits.train, digits.evaluate, digits\n"
            "print(digits.train.__name__, digits.evaluate.__name__, digits.RunConfig.__name__)")
    assert _python(code) == "fit evaluate RunConfig"


def test_an_unknown_name_is_an_attribute_error():
    import digits

    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        digits.nothing  # noqa: B018
    assert digits.create_model("seed") is not None and "seed" in digits.list_models()



@pytest.mark.slow
def test_predicting_needs_no_training_or_plotting_code(tmp_path):
    """STYLE's one-way flow: predict and serve need checkpoint, models and preprocess only (the
    predictor took resolve_device from the training loop until it moved to digits.device)."""
    code = ("import sys, torch\nfrom digits.checkpoint import describe, save_checkpoint\n"
            "from digits.models import create_model\nfrom digits.predictor import load_predictor\n"
            "import digits.serve.server\n"
            f"path = save_checkpoint({str(tmp_path / 'c.pt')!r}, create_model('seed'), describe('seed', {{}}, {{}}))\n"
            "load_predictor(path, device='auto')\n"
            "print(sorted(m for m in ('digits.train', 'digits.optim', 'digits.pipeline', 'digits.cli', "
            "'matplotlib') if m in sys.modules))")
    assert _python(code) == "[]"
