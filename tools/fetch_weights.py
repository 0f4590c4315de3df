"""Fill the weight caches with every pretrained weight the configs name:
``python tools/fetch_weights.py CONFIG [CONFIG ...]``. Hugging Face ids and
timm tags go to the Hugging Face cache (``HF_HOME``), URLs to the torch hub
cache (``TORCH_HOME``); for an offline cluster see docs/training.md. Exit
status 1 if something could not be fetched, 2 for a bad config."""
import argparse
import sys

from huggingface_hub import constants
from mmengine.config import Config

import mdrl_plugin  # noqa: F401  (registries)
from mdrl_plugin.models import find_weights

PROG = 'tools/fetch_weights.py'


def main(argv=None) -> int:
    """Fetch the weights of the configs; return the exit status."""
    parser = argparse.ArgumentParser(
        description='Download the pretrained weights configs name into the '
        'Hugging Face and torch hub caches')
    parser.add_argument('configs', nargs='+', metavar='CONFIG')
    args = parser.parse_args(argv)
    status = 0
    for config in args.configs:
        try:
            sources = find_weights(Config.fromfile(config))
        except (OSError, ValueError, SyntaxError) as err:
            print(f'{PROG}: error: {config}: {err}', file=sys.stderr)
            return 2
        print(f'{config}: {len(sources)} pretrained weight(s)')
        for src in sources:
            named = f'  {src.role} {src.name!r}'
            path = src.locate()
            if path is not None:
                print(f'{named}: already here: {path}')
            elif src.kind == 'path':
                print(f'{named}: missing; a local path, nothing to fetch')
            elif constants.HF_HUB_OFFLINE:
                print(f'{named}: not cached, and HF_HUB_OFFLINE is set: '
                      'unset it to download')
            else:
                try:
                    path = src.fetch()
                    print(f'{named}: fetched into {path}')
                except Exception as err:  # network, authorisation, unknown id
                    print(f'{named}: could not be fetched: '
                          f'{type(err).__name__}: {err}')
            status = 1 if path is None else status
    return status


if __name__ == '__main__':
    sys.exit(main())
