"""`import mdrl_plugin` registers components and changes nothing else.

The libraries the plugin uses are imported (and their loggers configured)
before the first snapshot, so that only the plugin's own changes show. Torch
runs with 3 threads, so a module-level ``torch.set_num_threads(1)`` is seen.
Then one known change of each kind is applied and the snapshot must see it
(a snapshot that cannot fail would prove nothing).
"""
import json
import os
import subprocess
import sys
import textwrap

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SNAPSHOT = textwrap.dedent('''
    import hashlib, json, logging, os, random, sys, warnings
    import cv2, numpy as np, torch, transformers
    # the libraries' own import-time changes (torchvision.ops imports
    # torch._dynamo, which sets TORCHINDUCTOR_CACHE_DIR) are not the plugin's
    import mmcv, timm, torchvision.ops  # noqa
    from mmengine.logging import MMLogger
    from mmengine.registry import DefaultScope
    from mmengine.runner.checkpoint import CheckpointLoader
    transformers.utils.logging.get_verbosity()  # configures its logger
    torch.set_num_threads(3)  # not 1: a stray set_num_threads(1) shows

    def digest(*parts):
        return hashlib.sha256(repr(parts).encode()).hexdigest()

    def snapshot():
        root = logging.getLogger()
        scope = DefaultScope.get_current_instance()
        return dict(
            schemes=[(k, f'{f.__module__}.{f.__qualname__}')
                     for k, v in CheckpointLoader._schemes.items()
                     for f in [getattr(v, 'func', v)]],
            warnings_filters=[repr(f) for f in warnings.filters],
            root_handlers=[repr(h) for h in root.handlers],
            root_level=root.level,
            logger_levels={n: logging.getLogger(n).level for n in (
                'mmengine', 'transformers', 'timm', 'py.warnings')},
            mmloggers={n: logger.level
                       for n, logger in MMLogger._instance_dict.items()},
            default_scope=[scope and scope.scope_name,
                           sorted(DefaultScope._instance_dict)],
            environ=dict(os.environ),
            sys_path=list(sys.path),
            rng=[digest(random.getstate()),
                 digest(np.random.get_state()[1].tobytes(),
                        np.random.get_state()[2]),
                 digest(torch.get_rng_state().numpy().tobytes())],
            cv2_threads=cv2.getNumThreads(),
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

    def changed(before, after):
        return sorted(k for k in before if before[k] != after[k])

    before = snapshot()
    import mdrl_plugin  # noqa
    after = snapshot()
    from mdrl_plugin.registry import MODELS
    assert MODELS.get('MDRL') is not None  # it did register
    seen = {}
    for change in sys.argv[1:]:
        ahead = snapshot()
        exec(change)
        seen[change] = changed(ahead, snapshot())
    print(json.dumps(dict(before=before, after=after, seen=seen)))
''')

#: One change of each kind the snapshot must see, and where it shows.
CHANGES = {
    'torch.set_num_threads(1)': ['num_threads'],
    'cv2.setNumThreads(cv2.getNumThreads() + 2)': ['cv2_threads'],
    'random.random()': ['rng'],
    'np.random.rand()': ['rng'],
    'torch.rand(1)': ['rng'],
    "os.environ['MDRL_SIDE_EFFECT'] = '1'": ['environ'],
    "sys.path.insert(0, '/nowhere')": ['sys_path'],
    "DefaultScope.get_instance('side', scope_name='mdrl_plugin')":
    ['default_scope'],
    "logging.getLogger('mmengine').setLevel(logging.ERROR)":
    ['logger_levels'],
    'transformers.logging.set_verbosity_error()': ['logger_levels'],
    "MMLogger.get_instance('side', log_level='ERROR')": ['mmloggers'],
    'import mdrl_plugin.engine as e; e.enable_safe_checkpoint_loading()':
    ['schemes'],
}


def test_import_changes_no_global_state():
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS='3')
    proc = subprocess.run([sys.executable, '-c', SNAPSHOT, *CHANGES],
                          env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    before, after = result['before'], result['after']
    assert set(before) == set(after)
    for key in before:
        assert after[key] == before[key], key
    assert before['num_threads'] == 3  # not the 1 a stray call would set
    assert ['', 'mmengine.runner.checkpoint.load_from_local'] in \
        before['schemes']
    assert result['seen'] == CHANGES
