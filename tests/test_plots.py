"""Figures whose layout digits sets itself (no bbox_inches="tight"): nothing drawn outside the page."""
import pytest

from digits import plots


@pytest.mark.parametrize("models", [1, 2, 6])
def test_the_comparison_figure_keeps_its_axis_labels_and_title_on_the_page(models, tmp_path, monkeypatch):
    drawn = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: drawn.append(fig))
    summary = [{"model": f"model-{i}", "val_accuracy": 0.99, "val_accuracy_std": 0.001,
                "test_accuracy": 0.991, "test_accuracy_std": 0.002} for i in range(models)]
    plots.plot_comparison(summary, tmp_path / "comparison.png", title="recipe default, 3 seed(s)")
    fig = drawn[0]
    fig.canvas.draw()  # the axis label is placed beside its tick labels only when drawn
    renderer = fig.canvas.get_renderer()
    page = fig.bbox
    ax = fig.axes[0]
    for text in (ax.yaxis.label, ax.xaxis.label, ax.title, *ax.get_xticklabels(), *ax.get_yticklabels()):
        box = text.get_window_extent(renderer)
        assert page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0 and box.y1 <= page.y1, \
            f"{text.get_text()!r} at {box.bounds} leaves the {page.width}x{page.height} figure"
    plots.plt.close(fig)
