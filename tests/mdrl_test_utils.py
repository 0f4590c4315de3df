"""Helpers shared by the tests (tiny models, tiny data, config shrinking).

Imported as ``from mdrl_test_utils import ...`` (``tests/`` is on sys.path).
"""
import os

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


#: A small word list that covers the captions the tests write.
TINY_VOCAB = [
    '[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', 'a', 'an', 'the', 'man',
    'woman', 'person', 'in', 'with', 'and', 'wearing', 'red', 'blue', 'green',
    'black', 'white', 'yellow', 'shirt', 'coat', 'pants', 'skirt', 'shoes',
    'bag', 'hat', 'carrying', 'is', 'he', 'she', 'has', 'short', 'long',
    'hair', '.', ',', 'walking', 'jacket', 'dress', 'backpack', 'of', 'on'
]


def write_tiny_bert(folder: str, hidden_size: int = 32, num_layers: int = 2,
                    seed: int = 0) -> str:
    """Write a randomly initialised BERT and its tokenizer in HF format.

    Args:
        folder: Destination folder (created).
        hidden_size: BERT width.
        num_layers: Number of BERT layers.
        seed: Seed of the random weights.

    Returns:
        The folder, loadable with ``from_pretrained(folder)``.
    """
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    os.makedirs(folder, exist_ok=True)
    vocab_file = os.path.join(folder, 'vocab.txt')
    with open(vocab_file, 'w') as f:
        f.write('\n'.join(TINY_VOCAB) + '\n')
    BertTokenizer(vocab_file, do_lower_case=True).save_pretrained(folder)
    config = BertConfig(
        vocab_size=len(TINY_VOCAB), hidden_size=hidden_size,
        num_hidden_layers=num_layers, num_attention_heads=2,
        intermediate_size=hidden_size * 2, max_position_embeddings=128)
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(folder)
    return folder


def tiny_mdrl_cfg(bert_dir: str, num_classes: int = 4, img_size=(32, 16),
                  **overrides) -> dict:
    """Config of a tiny but complete MDRL (ViT, frozen BERT + LTE, DLL, CIM).

    Args:
        bert_dir: Folder from :func:`write_tiny_bert`.
        num_classes: Number of training identities.
        img_size: ``(H, W)``; patches are 8x8.
        **overrides: Top-level keys of the model config to replace.

    Returns:
        A model config dict for ``MODELS.build``.
    """
    cfg = dict(
        type='MDRL',
        num_classes=num_classes,
        data_preprocessor=dict(
            type='TextImageDataPreprocessor', tokenizer=bert_dir, max_length=16),
        image_encoder=dict(
            type='TimmVisionTransformer', arch='vit_base_patch16_224',
            img_size=img_size, patch_size=8, drop_path_rate=0.0,
            arch_kwargs=dict(embed_dim=32, depth=1, num_heads=2)),
        text_encoder=dict(
            type='BertTextEncoder', pretrained=bert_dir, num_lte_layers=1,
            num_heads=2, dropout=0.0),
        image_local=dict(type='DisorderedLocalLearning', num_groups=2, num_heads=2),
        cross_modal=dict(type='CrossModalInteraction', num_layers=1, num_heads=2))
    cfg.update(overrides)
    return cfg


def shrink_config(cfg, bert_dir: str, data_root: str, img_size=(32, 16),
                  width: int = 32) -> None:
    """Make a shipped config tiny in place: small encoders, tiny data, 2 iterations.

    The structure (which modules, losses and options) is kept; only sizes,
    paths and the schedule change.
    """
    model = cfg.model
    enc = model.image_encoder
    if enc.type == 'TimmVisionTransformer':
        enc.update(img_size=img_size, patch_size=8, stride=8, pretrained=None,
                   out_channels=width,
                   arch_kwargs=dict(embed_dim=width, depth=1, num_heads=2))
    else:
        enc.update(arch='resnet18', pretrained=None, out_channels=width)
    model.text_encoder.update(pretrained=bert_dir, num_heads=2, out_channels=width)
    model.data_preprocessor.update(tokenizer=bert_dir, max_length=16)
    for key in ('image_local', 'text_local', 'cross_modal'):
        if model.get(key):
            model[key].update(num_heads=2)
    model.num_classes = 6
    for split in ('train', 'val', 'test'):
        loader = cfg[f'{split}_dataloader']
        loader.update(batch_size=4, num_workers=0, persistent_workers=False)
        loader.dataset.data_root = data_root
        for t in loader.dataset.pipeline:
            if t['type'] == 'Resize':
                t['scale'] = (img_size[1], img_size[0])
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=2, val_interval=2)
    cfg.param_scheduler = []
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', interval=2, by_epoch=False)
    cfg.log_processor = dict(window_size=1, by_epoch=False)
    cfg.env_cfg.dist_cfg = dict(backend='gloo')


def fork(target, *args):
    """Start ``target(*args)`` in a forked process and return it (a
    ``multiprocessing.Process``): it starts with this process's imports,
    where a new interpreter imports torch and the plugin again (about 9 s)."""
    import multiprocessing
    proc = multiprocessing.get_context('fork').Process(target=target,
                                                       args=args)
    proc.start()
    return proc


def run_ranks(worker, out_dir, *args, world_size: int = 2) -> list:
    """Run ``worker(rank, world_size, init_file, out_dir, *args)`` on
    ``world_size`` gloo ranks and return what each saved to
    ``out_dir/rank<r>.pt``.

    The ranks are forked, not spawned: they start with this process's
    imports (a spawned rank imports torch and the plugin again, about 9 s).
    """
    import torch
    import torch.multiprocessing as mp
    mp.start_processes(
        worker, args=(world_size, os.path.join(out_dir, 'init'), str(out_dir),
                      *args),
        nprocs=world_size, join=True, start_method='fork')
    return [torch.load(os.path.join(out_dir, f'rank{r}.pt'),
                       weights_only=False) for r in range(world_size)]


def put_in_hub_cache(cache_dir: str, repo_id: str, files: dict,
                     revision: str = 'ab' * 20) -> str:
    """Lay files out as a Hugging Face hub download leaves them.

    ``<cache_dir>/models--<org>--<name>/refs/main`` names the revision and
    ``snapshots/<revision>/`` holds the files (real downloads link them to
    ``blobs/``; plain copies read the same).

    Args:
        cache_dir: The hub cache (``$HF_HOME/hub``).
        repo_id: E.g. ``'bert-base-uncased'`` or ``'timm/test_vit.r160_in1k'``.
        files: ``{name in the repo: local file to copy}``.
        revision: The commit hash to file them under.

    Returns:
        The snapshot folder.
    """
    import shutil
    repo = os.path.join(cache_dir, 'models--' + repo_id.replace('/', '--'))
    snapshot = os.path.join(repo, 'snapshots', revision)
    os.makedirs(snapshot, exist_ok=True)
    os.makedirs(os.path.join(repo, 'refs'), exist_ok=True)
    with open(os.path.join(repo, 'refs', 'main'), 'w') as f:
        f.write(revision)
    for name, src in files.items():
        shutil.copyfile(src, os.path.join(snapshot, name))
    return snapshot


def folder_files(folder: str) -> dict:
    """``{name: path}`` of the files of a folder (for :func:`put_in_hub_cache`)."""
    return {name: os.path.join(folder, name) for name in os.listdir(folder)
            if os.path.isfile(os.path.join(folder, name))}


def tree_bytes(root: str) -> dict:
    """``{relative path: bytes}`` of every file below ``root``."""
    found = {}
    for d, _, fs in os.walk(root):
        for f in fs:
            with open(os.path.join(d, f), 'rb') as fh:
                found[os.path.relpath(os.path.join(d, f), root)] = fh.read()
    return found


def train_few_iterations(cfg, work_dir: str, before_train=None,
                         validate: bool = True) -> 'dict | None':
    """Train a :func:`shrink_config`-ed config (2 iterations) and validate it.

    Checks that the last checkpoint was written and the val metrics are
    percentages. (Training already validates once, at its last iteration.)

    Args:
        cfg: The shrunk config.
        work_dir: The run's work_dir.
        before_train: Optional ``fn(runner)`` called once the Runner (and
            its model) is built, before training.
        validate: Run the val loop once more after training and check its
            metrics.

    Returns:
        The val metrics (None without ``validate``).
    """
    from mmengine.runner import Runner
    cfg.work_dir = str(work_dir)
    runner = Runner.from_cfg(cfg)
    if before_train is not None:
        before_train(runner)
    runner.train()
    assert os.path.isfile(os.path.join(str(work_dir), 'iter_2.pth'))
    if not validate:
        return None
    metrics = runner.val_loop.run()
    assert set(metrics) == {'R1', 'R5', 'R10', 'mAP', 'mINP'}
    assert all(0.0 <= v <= 100.0 for v in metrics.values())
    return metrics
