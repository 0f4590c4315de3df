"""Safe checkpoint loading: allow-list, refusals, opt-in, MMEngine wiring."""
import os
import pickle
import re
import subprocess
import zipfile

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner import load_checkpoint
from mmengine.runner.checkpoint import CheckpointLoader, _load_checkpoint

from mdrl_plugin.engine import (
    CheckpointLoadError,
    UnsafeCheckpointError,
    disable_safe_checkpoint_loading,
    enable_safe_checkpoint_loading,
    safe_checkpoint_loading_enabled,
    safe_torch_load,
)
from mdrl_plugin.engine.checkpoint import ALLOWED_CHECKPOINT_GLOBALS, is_complete_checkpoint

EXTEND = (
    'If the file is yours and holds a class you trust, add it to the allow-'
    'list: mdrl_plugin.engine.enable_safe_checkpoint_loading(allow_globals='
    "['module.Name']), or in a config custom_hooks=[dict(type="
    "'CheckpointLoadingHook', allow_globals=['module.Name'])]. ")

OPT_IN = (
    'If you trust this file, load it with full unpickling: pass '
    '--allow-unsafe-checkpoint to tools/train.py or tools/test.py, or call '
    'safe_torch_load(path, allow_unsafe=True) / '
    'mdrl_plugin.engine.enable_safe_checkpoint_loading(allow_unsafe=True). '
    'Never do this for files from an untrusted source: unpickling can run '
    'arbitrary code.')


class RunsShell:
    """Unpickling this runs ``os.system`` (the classic pickle attack)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


class StartsProcess:

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (subprocess.Popen, (['touch', self.marker], ))


class Arbitrary:
    """A harmless class that is not on the allow-list."""

    def __init__(self, value=3):
        self.value = value


class GetAttr:
    """Pickles as ``getattr(obj, name)``."""

    def __init__(self, obj, name, *default):
        self.args = (obj, name) + default

    def __reduce__(self):
        return (getattr, self.args)


def _save(tmp_path, name, obj):
    path = str(tmp_path / name)
    torch.save(obj, path)
    return path


def test_mmengine_checkpoint_needs_the_allow_list(mmengine_checkpoint):
    # the problem being solved: torch's default weights_only load fails
    with pytest.raises(pickle.UnpicklingError):
        torch.load(mmengine_checkpoint, weights_only=True)
    ckpt = safe_torch_load(mmengine_checkpoint)
    assert set(ckpt) >= {'meta', 'state_dict', 'message_hub', 'optimizer'}
    assert ckpt['meta']['iter'] == 2
    buffers = ckpt['message_hub']['log_scalars']
    loss = buffers['train/loss']
    assert isinstance(loss, HistoryBuffer)
    # the statistic methods came back through the restricted getattr
    assert loss._statistics_methods['min'] is HistoryBuffer.min
    assert isinstance(loss.data[0], np.ndarray)
    assert ckpt['state_dict']['fc1.weight'].shape == (16, 8)


def test_refuses_os_system(tmp_path):
    marker = tmp_path / 'pwned'
    path = _save(tmp_path, 'evil.pth', {'x': RunsShell(str(marker))})
    with pytest.raises(UnsafeCheckpointError) as info:
        safe_torch_load(path)
    assert str(info.value) == (
        f"Refusing to load checkpoint '{path}': it contains the pickled "
        'global(s) posix.system, which the safe loader does not allow (a '
        'pickled callable or class can run code while it is loaded). '
        + EXTEND + OPT_IN)
    assert info.value.path == path
    assert info.value.offending == ['posix.system']
    assert not marker.exists()


def test_refuses_subprocess_popen_by_its_python3_name(tmp_path):
    marker = tmp_path / 'pwned'
    path = _save(tmp_path, 'popen.pth', [StartsProcess(str(marker))])
    with pytest.raises(UnsafeCheckpointError) as info:
        safe_torch_load(path)
    assert info.value.offending == ['subprocess.Popen']
    assert 'subprocess.Popen' in str(info.value)
    assert not marker.exists()


def test_refuses_an_arbitrary_class(tmp_path):
    path = _save(tmp_path, 'cls.pth', {'obj': Arbitrary()})
    with pytest.raises(UnsafeCheckpointError) as info:
        safe_torch_load(path)
    assert info.value.offending == [f'{__name__}.Arbitrary']
    assert f"Refusing to load checkpoint '{path}'" in str(info.value)


@pytest.mark.parametrize('args, shown', [
    ((HistoryBuffer, '__init__'),
     "builtins.getattr(mmengine.logging.history_buffer.HistoryBuffer, "
     "'__init__')"),
    ((np.ndarray, 'tofile'), "builtins.getattr(numpy.ndarray, 'tofile')"),
    ((HistoryBuffer, 'min', None),
     "builtins.getattr(mmengine.logging.history_buffer.HistoryBuffer, "
     "'min')"),
])
def test_getattr_only_for_history_buffer_statistics(tmp_path, args, shown):
    path = _save(tmp_path, 'getattr.pth', {'f': GetAttr(*args)})
    with pytest.raises(UnsafeCheckpointError) as info:
        safe_torch_load(path)
    assert info.value.offending == [shown]
    assert str(info.value).startswith(
        f"Refusing to load checkpoint '{path}': it contains the pickled "
        f'global(s) {shown}, which')


@pytest.mark.parametrize('name', ['min', 'max', 'mean', 'current'])
def test_getattr_of_each_statistic_is_allowed(tmp_path, name):
    path = _save(tmp_path, 'stat.pth', {'f': GetAttr(HistoryBuffer, name)})
    assert safe_torch_load(path)['f'] is getattr(HistoryBuffer, name)


def test_numpy_objects_and_dtype_classes_load(tmp_path):
    obj = dict(
        arr=np.arange(6, dtype=np.float32).reshape(2, 3),
        scalar=np.float64(2.5),
        dtype=np.dtype('int16'),
        dtype_class=type(np.dtype('float64')))
    loaded = safe_torch_load(_save(tmp_path, 'np.pth', obj))
    np.testing.assert_array_equal(loaded['arr'], obj['arr'])
    assert loaded['arr'].dtype == np.float32
    assert loaded['scalar'] == 2.5 and isinstance(loaded['scalar'],
                                                  np.float64)
    assert loaded['dtype'] == np.dtype('int16')
    assert loaded['dtype_class'] is np.dtypes.Float64DType


def test_allow_list_covers_both_numpy_spellings():
    names = {name for _, name in ALLOWED_CHECKPOINT_GLOBALS}
    for package in ('numpy.core', 'numpy._core'):
        assert f'{package}.multiarray._reconstruct' in names
        assert f'{package}.multiarray.scalar' in names
    assert 'builtins.getattr' in names
    assert 'mmengine.logging.history_buffer.HistoryBuffer' in names
    getattr_impl = dict((n, o) for o, n in ALLOWED_CHECKPOINT_GLOBALS)[
        'builtins.getattr']
    assert getattr_impl is not getattr


def test_opt_in_per_call_and_process_wide(tmp_path):
    path = _save(tmp_path, 'cls.pth', {'obj': Arbitrary(5)})
    assert safe_torch_load(path, allow_unsafe=True)['obj'].value == 5
    with pytest.raises(UnsafeCheckpointError):
        safe_torch_load(path)
    enable_safe_checkpoint_loading(allow_unsafe=True)
    assert safe_torch_load(path)['obj'].value == 5
    assert _load_checkpoint(path)['obj'].value == 5  # MMEngine's path
    enable_safe_checkpoint_loading()  # settings add up: still unsafe
    assert safe_torch_load(path)['obj'].value == 5
    disable_safe_checkpoint_loading()
    with pytest.raises(UnsafeCheckpointError):
        safe_torch_load(path)


def test_missing_and_truncated_files(tmp_path, mmengine_checkpoint):
    missing = str(tmp_path / 'nope.pth')
    with pytest.raises(FileNotFoundError) as info:
        safe_torch_load(missing)
    assert str(info.value) == (
        f"Checkpoint file '{missing}' does not exist or is not a file.")
    truncated = str(tmp_path / 'cut.pth')
    with open(mmengine_checkpoint, 'rb') as f:
        data = f.read()
    with open(truncated, 'wb') as f:
        f.write(data[:len(data) // 2])
    with pytest.raises(CheckpointLoadError) as info:
        safe_torch_load(truncated)
    assert str(info.value).startswith(
        f"Could not load checkpoint '{truncated}': ")
    assert 'truncated' in str(info.value)
    assert not is_complete_checkpoint(truncated)
    assert is_complete_checkpoint(mmengine_checkpoint)


def test_safetensors_files(tmp_path):
    from safetensors.torch import save_file
    path = str(tmp_path / 'w.safetensors')
    save_file({'w': torch.arange(4.)}, path)
    assert torch.equal(safe_torch_load(path)['w'], torch.arange(4.))


@pytest.fixture
def loader_put_back():
    """MMEngine's local loader as found, after the test (even a failed one)."""
    found = CheckpointLoader._schemes['']  # no public getter
    yield
    CheckpointLoader.register_scheme('', found, force=True)


def test_mmengine_loads_go_through_the_safe_loader(tmp_path,
                                                   mmengine_checkpoint,
                                                   loader_put_back):
    enable_safe_checkpoint_loading()
    for path in ('/a/b.pth', 'rel/b.pth'):
        assert CheckpointLoader._get_checkpoint_loader(path).__module__ == \
            'mdrl_plugin.engine.checkpoint'
    # `load_from` / `mmengine.runner.load_checkpoint`
    from toy_components import ToyModel
    model = ToyModel()
    torch.nn.init.zeros_(model.fc1.weight)
    ckpt = load_checkpoint(model, mmengine_checkpoint)
    assert torch.equal(model.fc1.weight, ckpt['state_dict']['fc1.weight'])
    # and a malicious file is refused on that path too
    evil = _save(tmp_path, 'evil.pth', {'state_dict': Arbitrary()})
    with pytest.raises(UnsafeCheckpointError):
        _load_checkpoint(evil)
    with pytest.raises(FileNotFoundError, match='does not exist'):
        _load_checkpoint(str(tmp_path / 'missing.pth'))


def test_is_complete_checkpoint_rejects_non_checkpoints(tmp_path):
    plain = tmp_path / 'a.zip'
    with zipfile.ZipFile(plain, 'w') as zf:
        zf.writestr('readme.txt', 'hi')
    assert not is_complete_checkpoint(str(plain))
    assert not is_complete_checkpoint(str(tmp_path / 'missing.pth'))


def test_a_text_file_is_not_a_pytorch_checkpoint(tmp_path):
    path = tmp_path / 'x.pth'
    path.write_text('hello, I am a text file\n')
    for allow_unsafe in (False, True):
        with pytest.raises(CheckpointLoadError) as info:
            safe_torch_load(str(path), allow_unsafe=allow_unsafe)
        assert not isinstance(info.value, UnsafeCheckpointError)
        assert str(info.value) == (
            f"Could not load checkpoint '{path}': it is not a PyTorch "
            'checkpoint (a file written by torch.save is a zip archive or a '
            "pickle; this one starts with b'hello, I'). Check the path: it "
            'should name a .pth file written by training.')
    empty = tmp_path / 'empty.pth'
    empty.write_bytes(b'')
    with pytest.raises(CheckpointLoadError, match='this one is empty'):
        safe_torch_load(str(empty))
    # the legacy (pickle) torch.save format still loads
    legacy = str(tmp_path / 'legacy.pth')
    torch.save({'w': torch.ones(2)}, legacy,
               _use_new_zipfile_serialization=False)
    assert torch.equal(safe_torch_load(legacy)['w'], torch.ones(2))


def test_enable_and_disable_switch_mmengines_local_loader():
    from mmengine.runner.checkpoint import load_from_local
    disable_safe_checkpoint_loading()
    assert CheckpointLoader._schemes[''] is load_from_local
    assert not safe_checkpoint_loading_enabled()
    before = list(CheckpointLoader._schemes.items())
    enable_safe_checkpoint_loading()
    enable_safe_checkpoint_loading()  # twice: still undone by one call
    assert CheckpointLoader._schemes[''] is not load_from_local
    assert safe_checkpoint_loading_enabled()
    disable_safe_checkpoint_loading()
    assert list(CheckpointLoader._schemes.items()) == before


def test_users_extend_the_allow_list(tmp_path):
    path = _save(tmp_path, 'cls.pth', {'obj': Arbitrary(7)})
    with pytest.raises(UnsafeCheckpointError, match=re.escape(
            "enable_safe_checkpoint_loading(allow_globals=['module.Name'])")):
        safe_torch_load(path)
    try:
        enable_safe_checkpoint_loading(
            allow_globals=[f'{__name__}.Arbitrary'])
        assert safe_torch_load(path)['obj'].value == 7
        assert _load_checkpoint(path)['obj'].value == 7  # MMEngine's path
    finally:
        disable_safe_checkpoint_loading()
    with pytest.raises(UnsafeCheckpointError):
        safe_torch_load(path)  # the addition is gone again
    with pytest.raises(ValueError, match="cannot import 'no_such.Thing'"):
        enable_safe_checkpoint_loading(allow_globals=['no_such.Thing'])


#: Written by the engine before issue 16 (commit f302a2b): the toy config
#: with ``MixedPrecisionOptimWrapper(device_type='cpu', dtype='float16',
#: loss_scale=dict(init_scale=256.0))``, 2 iterations.
OLD_CKPT = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'data',
                        'toy_iter_2_v0.pth')


def test_a_checkpoint_of_the_previous_engine_resumes_exactly(tmp_path):
    from toy_helpers import make_toy_cfg, run_toy, state_dicts_equal
    old = safe_torch_load(OLD_CKPT)
    assert old['meta']['iter'] == 2
    assert old['optimizer']['loss_scaler']['scale'] == 256.0
    assert set(old['rng_state']['states'][0]) == {'python', 'numpy', 'torch'}

    def cfg(work_dir):
        return make_toy_cfg(work_dir, **{
            'train_cfg.max_iters': 4, 'optim_wrapper': dict(
                type='mdrl_plugin.MixedPrecisionOptimWrapper',
                device_type='cpu', dtype='float16',
                loss_scale=dict(init_scale=256.0),
                optimizer=dict(type='SGD', lr=0.1, momentum=0.9))})

    run_toy(cfg(tmp_path / 'full'))
    full2 = safe_torch_load(str(tmp_path / 'full' / 'iter_2.pth'))
    assert state_dicts_equal(full2['state_dict'], old['state_dict'])
    assert full2['optimizer']['loss_scaler'] == old['optimizer']['loss_scaler']
    resumed = cfg(tmp_path / 'cut')
    resumed.resume, resumed.load_from = True, OLD_CKPT
    run_toy(resumed)
    full4, cut4 = (safe_torch_load(str(tmp_path / d / 'iter_4.pth'))
                   for d in ('full', 'cut'))
    assert state_dicts_equal(full4['state_dict'], cut4['state_dict'])
    assert full4['optimizer']['loss_scaler'] == \
        cut4['optimizer']['loss_scaler']
