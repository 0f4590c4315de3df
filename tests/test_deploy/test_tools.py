"""tools/export.py (with the split parity), tools/search.py --onnx, tools/serve.py."""
import json
import os.path as osp
import sys

import pytest
import torch

from mdrl_test_utils import REPO_ROOT, shrink_config

sys.path.insert(0, osp.join(REPO_ROOT, 'tools'))
import export as export_tool  # noqa: E402
import search as search_tool  # noqa: E402
import serve as serve_tool  # noqa: E402


@pytest.fixture(scope='module')
def demo_like(tiny_bert_dir, tiny_pedes_root, tmp_path_factory):
    """The demo config made tiny (global+local), a checkpoint of it."""
    from mmengine import Config

    import mdrl_plugin  # noqa: F401
    from mdrl_plugin.registry import MODELS
    root = tmp_path_factory.mktemp('demo_like')
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs', 'mdrl_demo.py'))
    shrink_config(cfg, tiny_bert_dir, tiny_pedes_root)
    cfg.model.num_classes = 6
    cfg_path = str(root / 'cfg.py')
    cfg.dump(cfg_path)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    ckpt = str(root / 'tiny.pth')
    torch.save({'meta': {}, 'state_dict': model.state_dict()}, ckpt)
    return dict(root=root, config=cfg_path, checkpoint=ckpt)


def test_export_tool_with_split_parity(demo_like, capsys):
    out = str(demo_like['root'] / 'export')
    code = export_tool.main([demo_like['config'], demo_like['checkpoint'],
                             '--out', out, '--check-split', 'test'])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report['num_gallery'] == 9 and report['num_queries'] == 18
    assert report['topk_identical'] == 1.0
    assert report['max_metric_diff'] < 0.01
    assert report['max_abs_diff']['text'] < 1e-4
    assert report['max_abs_diff']['image'] < 1e-4
    assert set(report['torch']) >= {'R1', 'mAP'}
    with open(osp.join(out, 'mdrl_export.json')) as f:
        assert json.load(f)['feature']['layout'] == 'global+local'
    # a second export into the same folder is refused with a clear error
    code = export_tool.main([demo_like['config'], demo_like['checkpoint'],
                             '--out', out])
    assert code == 2
    assert 'not empty' in capsys.readouterr().err
    # the split's data is read after the export: its errors are one line too
    code = export_tool.main([
        demo_like['config'], demo_like['checkpoint'], '--out', out,
        '--overwrite', '--check-split', 'test', '--cfg-options',
        'test_dataloader.dataset.data_root=/nonexistent/pedes'])
    err = capsys.readouterr().err
    assert code == 2 and 'Traceback' not in err
    assert err.splitlines()[-1].startswith('error: ') and \
        '/nonexistent/pedes' in err.splitlines()[-1]


def test_export_tool_names_a_missing_checkpoint(demo_like, capsys):
    code = export_tool.main([demo_like['config'], 'nope.pth', '--out',
                             str(demo_like['root'] / 'x')])
    assert code == 2
    assert 'nope.pth' in capsys.readouterr().err


def test_search_tool_onnx_flag_gives_the_same_ranking(deploy_model,
                                                      deploy_gallery, tmp_path,
                                                      capsys):
    common = ['--gallery', deploy_gallery, '--query', 'a man in a red shirt',
              '--topk', '5', '--out', 'none', '--no-progress']
    assert search_tool.main([deploy_model['config'],
                             deploy_model['checkpoint'], *common]) == 0
    torch_out = capsys.readouterr().out
    index = str(tmp_path / 'onnx_index')
    assert search_tool.main(['unused', 'unused', '--onnx',
                             deploy_model['export'], '--save-index', index,
                             *common]) == 0
    onnx_out = capsys.readouterr().out

    def paths(text):
        return [line.split()[-1] for line in text.splitlines()
                if line.strip()[:1].isdigit()]

    assert paths(onnx_out) == paths(torch_out) and len(paths(torch_out)) == 5
    # --onnx reads labels files like the PyTorch path (and marks matches)
    labels = tmp_path / 'labels.json'
    labels.write_text(json.dumps({osp.relpath(p, deploy_gallery): i % 3 for
                                  i, p in enumerate(paths(torch_out))}))
    assert search_tool.main(['-', '-', '--onnx', deploy_model['export'],
                             '--labels', str(labels), '--query-pid', '1',
                             *common]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()
            if line.strip()[:1].isdigit()]
    assert [r[2] for r in rows] == ['0', '1', '2', '0', '1']
    assert [r[3] for r in rows] == ['no', 'yes', 'no', 'no', 'yes']
    # one label format: a PEDES annotation list is refused, in one line
    labels.write_text(json.dumps([{'file_path': 'a.jpg', 'id': 1}]))
    assert search_tool.main(['-', '-', '--onnx', deploy_model['export'],
                             '--labels', str(labels), *common]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f'tools/search.py: error: Labels file '
                          f'{str(labels)!r} holds a JSON list; expected an '
                          'object') and 'Traceback' not in err
    # the index written with --onnx is read by the PyTorch path
    common[1] = index
    assert search_tool.main([deploy_model['config'],
                             deploy_model['checkpoint'], *common]) == 0
    assert paths(capsys.readouterr().out) == paths(torch_out)


def test_search_tool_refuses_options_that_onnx_would_ignore(capsys):
    base = ['-', '-', '--onnx', 'export', '--gallery', 'g', '--query', 'q']
    assert search_tool.parse_args(base + ['--device', 'cpu']).onnx == 'export'
    assert search_tool.parse_args(base + ['--num-workers', '2']).num_workers \
        == 2  # the image-reading threads are the shared loop's
    with pytest.raises(SystemExit) as info:
        search_tool.parse_args(base + ['--device', 'cuda', '--cfg-options',
                                       'a=1'])
    assert info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(
        'error: --device, --cfg-options: not used with --onnx (ONNX Runtime '
        "encodes on the CPU with the export's own settings)")


def test_serve_tool_arguments(deploy_model, capsys):
    with pytest.raises(SystemExit):
        serve_tool.parse_args(['--index', 'i_index', '--model', 'ckpt.pth'])
    assert 'needs --config' in capsys.readouterr().err
    args = serve_tool.parse_args(['--index', 'i_index', '--model',
                                  deploy_model['export']])
    assert args.host == '127.0.0.1' and args.port == 8000
    assert args.allowed_host == ['127.0.0.1', 'localhost']
    assert (args.max_running, args.max_waiting) == (2, 64)
    args = serve_tool.parse_args(['--index', 'i_index', '--model',
                                  deploy_model['export'], '--host', '0.0.0.0',
                                  '--allowed-host', 'search.example',
                                  '--max-running', '4'])
    assert args.allowed_host == ['search.example'] and args.max_running == 4
    for option, value, low in (('--max-running', '0', 1),
                               ('--max-waiting', '-1', 0),
                               ('--max-topk', '0', 1)):
        with pytest.raises(SystemExit):  # before a model is loaded
            serve_tool.parse_args(['--index', 'i_index', '--model',
                                   deploy_model['export'], option, value])
        assert f'{option} must be >= {low}, got {value}' in \
            capsys.readouterr().err
    assert serve_tool.main(['--index', 'missing_index', '--model',
                            deploy_model['export']]) == 2
    assert 'missing_index' in capsys.readouterr().err
