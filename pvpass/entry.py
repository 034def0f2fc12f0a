"""The `pvpass-py` and `python -m pvpass` entry point: nothing imported
before the guard, so a ^C while Python imports the commands (the first
tens of milliseconds of every run) ends as main() ends one, exit 130 with
no traceback (a fuzz finding of the `files` target: SIGINT 30 ms in)."""


def run() -> int:
    try:
        from .cli import main
    except KeyboardInterrupt:
        return 130
    return main()
