"""FrozenTextCacheHook: cached training equals uncached training bit for bit,
and the cache is invalidated by a different tokenizer, max_length or BERT."""
import copy
import json
import os
import os.path as osp
from types import SimpleNamespace

import pytest
import torch
from mmengine.logging import MMLogger
from mmengine.structures import BaseDataElement

from mdrl_plugin.registry import HOOKS, MODELS, OPTIM_WRAPPERS

from mdrl_test_utils import REPO_ROOT, fork, shrink_config, tiny_mdrl_cfg, write_tiny_bert

pytestmark = pytest.mark.slow  # trainings, 2 ranks

CAPTIONS = [
    'a man in a red shirt',
    'the woman wearing a long black dress and white shoes with a bag',
    'a person with short hair',
    'she has a blue coat , black pants and a backpack',
    'a man carrying a green bag',
    'the woman is walking',
    'he is wearing a white hat , a yellow jacket and blue pants .',
    'a woman in a skirt',
    'a person wearing black shoes and a hat',
    'she is carrying a red bag on the long walking',
    'a man',
]
#: in no dataset: served live, in a batch with cached captions
UNSEEN = 'an unseen man with a shirt , shoes , hat and a red long coat'


class _Captions:
    """The part of a dataset the hook reads."""

    def __init__(self, texts):
        self.texts = texts

    def __len__(self):
        return len(self.texts)

    def get_data_info(self, idx):
        return dict(text=self.texts[idx])


def _fake_runner(model, work_dir, texts=CAPTIONS, optim_wrapper=None, val=None):
    return SimpleNamespace(
        model=model, work_dir=str(work_dir), optim_wrapper=optim_wrapper,
        logger=MMLogger.get_instance('text_cache_test'),
        train_dataloader=SimpleNamespace(dataset=_Captions(texts)),
        val_loop=val and SimpleNamespace(dataloader=SimpleNamespace(
            dataset=_Captions(val))))


def _batch(model, texts, step):
    g = torch.Generator().manual_seed(step)
    images = [torch.randint(0, 256, (3, 32, 16), dtype=torch.uint8, generator=g)
              for _ in texts]
    samples = [BaseDataElement(metainfo=dict(text=t, gt_label=i % 4))
               for i, t in enumerate(texts)]
    return model.data_preprocessor(dict(inputs=images, data_samples=samples), True)


def _optim_wrappers(models, amp):
    cfg = dict(type='MixedPrecisionOptimWrapper', dtype='bfloat16',
               device_type='cpu') if amp else dict(type='OptimWrapper')
    return [OPTIM_WRAPPERS.build(dict(cfg, optimizer=torch.optim.AdamW(
        [p for p in m.parameters() if p.requires_grad], lr=1e-2)))
        for m in models]


def _train_both_ways(plain, cached, wrappers, steps=6):
    """Train two copies side by side (each on its own deep copy of every
    batch) and require bit-identical losses and gradients."""
    batches = [CAPTIONS[0:4], CAPTIONS[4:8], CAPTIONS[8:11] + [UNSEEN]]
    for step in range(steps):
        data = _batch(plain, batches[step % 3], step)
        results = []
        for model, wrapper in zip((plain, cached), wrappers):
            model.train()
            torch.manual_seed(100 + step)  # DLL's random grouping
            with wrapper.optim_context(model):
                losses = model.loss(**copy.deepcopy(data))
            wrapper.backward(sum(losses.values()))
            results.append((losses, {n: p.grad.clone() for n, p in
                                     model.named_parameters() if p.grad is not None}))
            wrapper.step()
            wrapper.zero_grad()
        (loss_a, grad_a), (loss_b, grad_b) = results
        assert loss_a.keys() == loss_b.keys() and len(loss_a) == 5
        for name in loss_a:
            assert torch.equal(loss_a[name], loss_b[name]), (step, name)
        assert grad_a.keys() == grad_b.keys() and len(grad_a) > 20
        for name in grad_a:
            assert torch.equal(grad_a[name], grad_b[name]), (step, name)


def _only_cache(encoder):
    assert len(encoder.text_caches) == 1
    return next(iter(encoder.text_caches.values()))


def test_cached_training_equals_uncached_bit_for_bit(tiny_bert_dir, tmp_path):
    torch.manual_seed(0)
    plain = MODELS.build(tiny_mdrl_cfg(tiny_bert_dir))
    cached = copy.deepcopy(plain)
    hook = HOOKS.build(dict(type='FrozenTextCacheHook', batch_size=3))
    wrappers = _optim_wrappers((plain, cached), amp=False)
    hook.before_train(_fake_runner(cached, tmp_path, optim_wrapper=wrappers[1]))
    assert len(_only_cache(cached.text_encoder)) == len(CAPTIONS)
    assert plain.text_encoder.text_caches == {}
    _train_both_ways(plain, cached, wrappers)
    # 6 steps x 4 captions: all cached but UNSEEN (twice), which ran live
    assert cached.text_encoder.cache_stats == dict(hits=22, misses=2)

    plain.eval(), cached.eval()
    samples = [BaseDataElement(metainfo=dict(texts=CAPTIONS[:5] + [UNSEEN], pid=1))]
    data = plain.data_preprocessor(dict(
        inputs=[torch.zeros(3, 32, 16, dtype=torch.uint8)], data_samples=samples))
    feats = [m.predict(**copy.deepcopy(data))[0].text_feats for m in (plain, cached)]
    assert torch.equal(feats[0], feats[1])


def test_amp_training_is_served_by_a_cache_built_under_its_autocast(
        tiny_bert_dir, tmp_path):
    """``--amp`` on CPU (bf16 autocast): the hook builds the training cache
    under the optimizer wrapper's autocast and the validation cache without
    it; cached and uncached training match bit for bit, and so do
    the features of an evaluation forward (no autocast)."""
    torch.manual_seed(0)
    plain = MODELS.build(tiny_mdrl_cfg(tiny_bert_dir))
    cached = copy.deepcopy(plain)
    wrappers = _optim_wrappers((plain, cached), amp=True)
    HOOKS.build(dict(type='FrozenTextCacheHook')).before_train(_fake_runner(
        cached, tmp_path, optim_wrapper=wrappers[1], val=CAPTIONS[:5]))
    caches = {c.mode['autocast']: c for c in cached.text_encoder.text_caches.values()}
    assert sorted(caches) == ['off', 'torch.bfloat16']
    assert len(caches['torch.bfloat16']) == len(CAPTIONS) and len(caches['off']) == 5
    assert caches['off'].folder != caches['torch.bfloat16'].folder
    _train_both_ways(plain, cached, wrappers)
    assert cached.text_encoder.cache_stats == dict(hits=22, misses=2)
    ids = plain.data_preprocessor.tokenize(CAPTIONS[:5])
    outs = [m.eval().text_encoder(**ids) for m in (plain, cached)]
    assert all(torch.equal(a, b) for a, b in zip(*outs))
    assert cached.text_encoder.cache_stats == dict(hits=27, misses=2)


def test_a_forward_in_another_mode_runs_live_and_says_why(
        tiny_bert_dir, tmp_path, monkeypatch):
    """A cache built without autocast serves no bf16 autocast forward: BERT
    runs live, the losses and gradients equal the uncached ones, one line."""
    import mdrl_plugin.models.backbones.text_encoder as module
    records = []
    monkeypatch.setattr(module, 'print_log', lambda msg, logger, level:
                        records.append(msg))
    torch.manual_seed(0)
    plain = MODELS.build(tiny_mdrl_cfg(tiny_bert_dir))
    cached = copy.deepcopy(plain)
    HOOKS.build(dict(type='FrozenTextCacheHook')).before_train(
        _fake_runner(cached, tmp_path))  # no optimizer wrapper: no autocast
    assert _only_cache(cached.text_encoder).mode['autocast'] == 'off'
    _train_both_ways(plain, cached, _optim_wrappers((plain, cached), amp=True),
                     steps=3)
    assert cached.text_encoder.cache_stats == dict(hits=0, misses=0)
    assert records == [
        'BertTextEncoder: frozen text cache off for this forward (BERT runs '
        'live): autocast=off in the cache but torch.bfloat16 now']


def test_weights_changed_after_attaching_detach_the_cache(tiny_bert_dir, tmp_path):
    torch.manual_seed(0)
    model = MODELS.build(tiny_mdrl_cfg(tiny_bert_dir))
    HOOKS.build(dict(type='FrozenTextCacheHook')).before_train(
        _fake_runner(model, tmp_path))
    enc = model.text_encoder
    data = _batch(model, CAPTIONS[:2], 0)
    with torch.no_grad():
        enc.bert.embeddings.word_embeddings.weight.mul_(2)  # e.g. a checkpoint load
    with pytest.warns(UserWarning, match='BERT weights changed'):
        out = enc(data['inputs']['input_ids'], data['inputs']['attention_mask'])
    assert enc.text_caches == {}
    live = enc(data['inputs']['input_ids'], data['inputs']['attention_mask'])
    assert torch.equal(out[0], live[0])


def _cache_dirs(root):
    return sorted(d for d in os.listdir(root) if not d.startswith('.'))


def test_fingerprint_invalidates_and_reuses(tiny_bert_dir, tmp_path):
    """Another BERT checkpoint or encoder max_length -> another folder; the
    keys are token ids (checked on every hit), so another tokenizer or
    truncation adds its sequences to the same folder."""
    cache_dir = str(tmp_path / 'cache')

    def prepare(bert_dir, preproc_max=16, enc_max=64, seed=0, tokenizer=None):
        cfg = tiny_mdrl_cfg(bert_dir)
        cfg['data_preprocessor']['max_length'] = preproc_max
        cfg['data_preprocessor']['tokenizer'] = tokenizer or bert_dir
        cfg['text_encoder']['max_length'] = enc_max
        torch.manual_seed(seed)
        model = MODELS.build(cfg)
        HOOKS.build(dict(type='FrozenTextCacheHook', cache_dir=cache_dir)
                    ).before_train(_fake_runner(model, tmp_path))
        return model

    def shards(folder):
        return [d for d in os.listdir(folder) if d.startswith('shard-')]

    base = prepare(tiny_bert_dir)
    first = _only_cache(base.text_encoder).folder
    assert _cache_dirs(cache_dir) == [osp.basename(first)]
    meta = json.load(open(osp.join(first, 'meta.json')))
    assert meta['bert_max_length'] == 64 and meta['mode']['autocast'] == 'off'
    assert meta['feature_dtype'] == 'float32' and len(shards(first)) == 1
    # same fingerprint: reused, nothing recomputed (no new shard)
    again = prepare(tiny_bert_dir, seed=1)  # LTE seed does not matter
    assert _only_cache(again.text_encoder).folder == first
    assert len(shards(first)) == 1

    other_bert = write_tiny_bert(str(tmp_path / 'other_bert'), seed=1)
    variants = [prepare(other_bert), prepare(tiny_bert_dir, enc_max=32)]
    folders = {_only_cache(m.text_encoder).folder for m in variants}
    assert len(folders) == 2 and first not in folders
    assert len(_cache_dirs(cache_dir)) == 3
    # same BERT, other ids: truncation at 8 tokens, a vocabulary with two
    # words swapped; each adds a shard of the sequences it makes
    tok_dir = write_tiny_bert(str(tmp_path / 'other_tok'))
    vocab = open(osp.join(tok_dir, 'vocab.txt')).read().split('\n')
    i, j = vocab.index('man'), vocab.index('woman')
    vocab[i], vocab[j] = vocab[j], vocab[i]
    open(osp.join(tok_dir, 'vocab.txt'), 'w').write('\n'.join(vocab))
    if osp.exists(osp.join(tok_dir, 'tokenizer.json')):
        os.remove(osp.join(tok_dir, 'tokenizer.json'))  # rebuilt from vocab.txt
    same = [prepare(tiny_bert_dir, preproc_max=8),
            prepare(tiny_bert_dir, tokenizer=tok_dir)]
    assert {_only_cache(m.text_encoder).folder for m in same} == {first}
    assert len(shards(first)) == 3 and len(_cache_dirs(cache_dir)) == 3
    # never stale: every variant's cached features are its own BERT's
    for model in variants + same:
        data = _batch(model, CAPTIONS[:4], 0)
        ids, mask = data['inputs']['input_ids'], data['inputs']['attention_mask']
        enc = model.text_encoder
        cached = enc(ids, mask)
        hits = enc.cache_stats['hits']
        enc.attach_text_cache(None)
        assert hits == 4
        assert all(torch.equal(a, b) for a, b in zip(cached, enc(ids, mask)))


def test_runner_trains_and_tests_with_the_cache(tiny_bert_dir, tiny_pedes_root,
                                                 tmp_path):
    from mmengine.config import Config
    from mmengine.runner import Runner
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs', 'mdrl_demo.py'))
    assert any(h['type'] == 'FrozenTextCacheHook' for h in cfg.custom_hooks)
    shrink_config(cfg, tiny_bert_dir, tiny_pedes_root)
    cfg.work_dir = str(tmp_path)
    runner = Runner.from_cfg(cfg)
    runner.train()
    enc = runner.model.text_encoder
    cache = _only_cache(enc)
    assert cache.folder.startswith(str(tmp_path / 'text_cache'))
    # 6 training identities x 3 images x 2 captions, and 9 val images x 2
    assert len(cache) == 36 + 18
    assert enc.cache_stats['misses'] == 0
    runner.test()  # test captions are added as a third shard
    assert len(_only_cache(enc)) == 36 + 18 + 18
    assert len([d for d in os.listdir(cache.folder) if d.startswith('shard-')]) == 3


# ------------------------------------------------- several processes and nodes
def _node_worker(rank: int, init_file: str, root: str, bert_dir: str) -> None:
    """Rank ``rank`` of 2 gloo processes (forked), each acting as a node of
    its own (host ``node-<rank>``, local rank 0); writes what it saw to a
    JSON file."""
    import datetime
    import socket
    import time

    import torch.distributed as dist
    torch.set_num_threads(1)  # two ranks on a CPU
    socket.gethostname = lambda: f'node-{rank}'
    os.environ['LOCAL_RANK'] = '0'
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank,
                           world_size=2, timeout=datetime.timedelta(seconds=300))
    torch.manual_seed(0)
    model = MODELS.build(tiny_mdrl_cfg(bert_dir))
    enc = model.text_encoder
    node_dir = osp.join(root, f'node-{rank}')
    os.makedirs(node_dir)
    os.chdir(node_dir)  # a relative cache_dir: one folder per node
    runner = _fake_runner(model, node_dir, CAPTIONS[:8], val=CAPTIONS[8:])
    data = _batch(model, CAPTIONS, 0)['inputs']
    seen = {}

    def check(name):
        cache = _only_cache(enc)
        live = enc.frozen_bert_tokens(data['input_ids'], data['attention_mask'])
        seen[name] = dict(folder=osp.abspath(cache.folder), size=len(cache),
                          exact=torch.equal(enc._cached_bert_tokens(
                              data['input_ids'], data['attention_mask'], cache), live))

    shared = HOOKS.build(dict(type='FrozenTextCacheHook',
                              cache_dir=osp.join(root, 'shared')))
    compute = enc.frozen_bert_tokens  # slow: builds on two nodes would overlap
    enc.frozen_bert_tokens = lambda *args: (time.sleep(3), compute(*args))[1]
    dist.barrier()
    shared.before_train(runner)
    del enc.frozen_bert_tokens
    check('shared')
    enc.attach_text_cache(None)
    per_node = HOOKS.build(dict(type='FrozenTextCacheHook', cache_dir='cache'))
    per_node.before_train(runner)
    check('per_node')
    # rank 1 alone changes BERT (say, a checkpoint only it loaded): the ranks
    # now disagree about whether the cache is valid
    if rank == 1:
        with torch.no_grad():
            enc.bert.embeddings.word_embeddings.weight.mul_(2)
    per_node.before_val(runner)
    check('disagree')
    # rank 0 cannot write its cache (a file where its folder should be)
    if rank == 0:
        open(osp.join(node_dir, 'broken'), 'w').close()
    enc.attach_text_cache(None)
    HOOKS.build(dict(type='FrozenTextCacheHook', cache_dir='broken')
                ).before_val(runner)
    seen['broken'] = len(enc.text_caches)
    seen['after'] = [None, None]
    dist.all_gather_object(seen['after'], rank)
    with open(osp.join(root, f'rank{rank}.json'), 'w') as f:
        json.dump(seen, f)
    dist.destroy_process_group()  # not left to the interpreter's exit


@pytest.fixture(scope='module')
def two_nodes(tiny_bert_dir, tmp_path_factory):
    """Run :func:`_node_worker` as 2 processes (a hang fails, not blocks)."""
    root = str(tmp_path_factory.mktemp('two_nodes'))
    procs = [fork(_node_worker, rank, osp.join(root, 'pg'), root, tiny_bert_dir)
             for rank in range(2)]
    for proc in procs:
        proc.join(timeout=900)
    if any(proc.is_alive() for proc in procs):
        for proc in procs:
            proc.kill()
        pytest.fail('the ranks hung')
    assert [proc.exitcode for proc in procs] == [0, 0]  # tracebacks: above
    return root, [json.load(open(osp.join(root, f'rank{r}.json'))) for r in range(2)]


def test_two_nodes_sharing_a_folder_build_it_once(two_nodes):
    root, seen = two_nodes
    folder = seen[0]['shared']['folder']
    assert [s['shared'] for s in seen] == [
        dict(folder=folder, size=len(CAPTIONS), exact=True)] * 2
    # one shard for the train captions, one for the val captions: no copies
    assert len([d for d in os.listdir(folder) if d.startswith('shard-')]) == 2
    assert not [d for d in os.listdir(folder) if d.startswith('.')]


def test_nodes_with_their_own_folder_build_one_each(two_nodes):
    root, seen = two_nodes
    assert [s['per_node']['folder'] for s in seen] == [
        osp.join(root, f'node-{r}', 'cache', osp.basename(
            seen[0]['shared']['folder'])) for r in range(2)]
    assert all(s['per_node']['size'] == len(CAPTIONS) and s['per_node']['exact']
               for s in seen)


def test_ranks_that_disagree_about_the_cache_do_not_hang(two_nodes):
    root, seen = two_nodes
    assert seen[0]['disagree'] == seen[0]['per_node']  # untouched
    # rank 1 built a cache of its changed BERT, in a folder of its own
    assert seen[1]['disagree']['folder'] != seen[1]['per_node']['folder']
    assert seen[1]['disagree']['exact'] and seen[1]['disagree']['size'] == 3
    # a build that fails on rank 0 switches its cache off; rank 1 goes on
    assert [s['broken'] for s in seen] == [0, 1]
    assert [s['after'] for s in seen] == [[0, 1]] * 2

