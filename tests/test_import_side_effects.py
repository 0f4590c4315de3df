"""`import mdrl_plugin` registers components and changes nothing else."""
import json
import os
import subprocess
import sys
import textwrap

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SNAPSHOT = textwrap.dedent('''
    import json, logging, sys, warnings
    import torch
    from mmengine.runner.checkpoint import CheckpointLoader

    def snapshot():
        root = logging.getLogger()
        return dict(
            schemes=[(k, f'{v.__module__}.{v.__qualname__}')
                     for k, v in CheckpointLoader._schemes.items()],
            warnings_filters=[repr(f) for f in warnings.filters],
            root_handlers=[repr(h) for h in root.handlers],
            root_level=root.level,
            default_dtype=str(torch.get_default_dtype()),
            num_threads=torch.get_num_threads(),
            num_interop_threads=torch.get_num_interop_threads(),
            deterministic=torch.are_deterministic_algorithms_enabled(),
            deterministic_warn_only=(
                torch.is_deterministic_algorithms_warn_only_enabled()),
            cudnn=(torch.backends.cudnn.deterministic,
                   torch.backends.cudnn.benchmark,
                   torch.backends.cudnn.enabled),
            grad_enabled=torch.is_grad_enabled(),
            anomaly=torch.is_anomaly_enabled(),
            matmul_precision=torch.get_float32_matmul_precision(),
            printoptions=repr(torch._tensor_str.PRINT_OPTS.__dict__),
        )

    before = snapshot()
    import mdrl_plugin  # noqa
    from mdrl_plugin.registry import MODELS
    assert MODELS.get('MDRL') is not None  # it did register
    after = snapshot()
    print(json.dumps(dict(before=before, after=after)))
''')


def test_import_changes_no_global_state():
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, '-c', SNAPSHOT], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    before, after = result['before'], result['after']
    assert set(before) == set(after)
    for key in before:
        assert after[key] == before[key], key
    # the snapshot does look at what the plugin once changed
    assert ['', 'mmengine.runner.checkpoint.load_from_local'] in \
        before['schemes']
