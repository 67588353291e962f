"""fastconv.visualize returns Figures, leaves the caller's backend alone, and shows deeper
layers in a readable form."""
import subprocess
import sys

import numpy as np

from fastconv import nn
from fastconv.visualize import filters_figure, inputs_figure, visualize_model

from .test_cli_errors import subprocess_env


def test_figures_keep_the_callers_backend_and_pyplot_untouched():
    code = (
        "import sys, numpy as np, matplotlib\n"
        "matplotlib.use('pdf')\n"
        "from fastconv import nn\n"
        "from fastconv.visualize import visualize_model\n"
        "figs = visualize_model(nn.build_model('convnet'), np.zeros((4, 1, 32, 32)))\n"
        "assert matplotlib.get_backend() == 'pdf', matplotlib.get_backend()\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
        "print(sorted(figs))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=subprocess_env())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['filters_layer1', 'filters_layer2', 'inputs']"


def test_first_layer_is_one_tile_per_filter(tmp_path):
    from matplotlib.figure import Figure
    fig = filters_figure(np.random.default_rng(0).standard_normal((6, 1, 5, 5)))
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    fig.savefig(tmp_path / "f.png")
    assert (tmp_path / "f.png").stat().st_size > 0


def test_deeper_layer_shows_kernel_norms_and_the_strongest_filters():
    weight = np.random.default_rng(0).standard_normal((64, 64, 5, 5)) * 0.01
    weight[5, 3] *= 100                      # filter 5 listens mostly to channel 3
    weight[9, 60] *= 50
    fig = filters_figure(weight, n_strongest=4)
    heat, tiles = fig.axes[0], fig.axes[1]
    assert heat.images[0].get_array().shape == (64, 64)          # one cell per kernel
    labels = [t.get_text() for t in tiles.texts]
    assert labels[:2] == ["5:3", "9:60"] and len(labels) == 4


def test_visualize_model_and_inputs_return_figures():
    figs = visualize_model(nn.build_model("linear"))
    assert figs == {}                          # no convolutions, no inputs
    fig = inputs_figure(np.zeros((10, 1, 32, 32)))
    assert fig.axes[0].images[0].get_array().shape[0] > 32
