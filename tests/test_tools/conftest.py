"""The tools' ``main(argv)`` run in the test's process (no interpreter to
start: about 9 s of imports saved per call)."""
import warnings

import pytest

from toy_helpers import load_tool, preserved_global_state


@pytest.fixture
def run(tmp_path, monkeypatch, capsys):
    """``run(tool, *args)``: ``(status, stdout, stderr)`` of the tool's
    ``main`` in ``tmp_path``; what the tools and Runners change globally
    (environment, RNGs, loaders, warnings' printer) is put back."""
    monkeypatch.chdir(tmp_path)
    for name, value in (('LOCAL_RANK', '0'),
                        ('CUBLAS_WORKSPACE_CONFIG', ':4096:8')):
        monkeypatch.setenv(name, value)  # the tools' setdefault: undone
    monkeypatch.setattr(warnings, 'showwarning', warnings.showwarning)
    capsys.readouterr()

    def call(name, *args):
        status = load_tool(name).main([str(a) for a in args])
        out, err = capsys.readouterr()
        return status, out, err

    with preserved_global_state():
        yield call
