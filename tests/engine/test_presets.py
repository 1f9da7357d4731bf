"""Each preset reaches its exercise's figure on the full MNIST test set (slow: minutes)."""
import pytest

from engine import Trainer, get_preset
from engine.presets import PRESETS


@pytest.mark.slow
@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_reaches_its_target(name):
    done = Trainer(get_preset(name), threads=2).run()   # results do not depend on threads
    target = PRESETS[name]["target"]
    print(f"{name}: test accuracy {done['test_accuracy']:.4f} (target {target}), "
          f"{done['train_seconds']:.1f} s of training at {done['images_per_second']:.0f} img/s")
    assert done["status"] == "completed"
    assert done["test_accuracy"] >= target
