"""`pvpass` itself, built at install time (docs/build-path.md, "The fast
path"): the compiled launcher (pvpass/client/pvpass-cc.c with
PVPASS_LAUNCHER), which runs `pvpass cc` with no shell and no Python start;
the shell script pvpass/client/pvpass where no C compiler builds it, or
with PVPASS_LAUNCHER=0 in the environment. Everything else is in
pyproject.toml."""
import importlib.util
import os
import shutil

import setuptools
from distutils.command.build_scripts import build_scripts  # setuptools' own distutils

HERE = os.path.dirname(os.path.abspath(__file__))


def _fastpath():
    """pvpass/fastpath.py, loaded by path: the package is not installed yet."""
    spec = importlib.util.spec_from_file_location("_pvpass_fastpath", os.path.join(HERE, "pvpass", "fastpath.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class BuildScripts(build_scripts):
    def run(self) -> None:
        super().run()                        # the shell script: what stays without a compiler
        cc = shutil.which("cc") or shutil.which("gcc")
        if not cc or os.environ.get("PVPASS_LAUNCHER") == "0":
            return
        out = os.path.join(self.build_dir, "pvpass")
        tmp = out + ".launcher"
        fp = _fastpath()
        if fp.compile_client(cc, fp.client_source(), tmp, launcher=True) is None:
            os.chmod(tmp, 0o755)
            os.replace(tmp, out)
        elif os.path.exists(tmp):
            os.unlink(tmp)


setuptools.setup(cmdclass={"build_scripts": BuildScripts})
