/* The launcher prototype (tests/bench/fastpath.py): run the compiler, then
   decide the no-site verdict from the object in C; exit 100 = undecided. */
#include "compile.h"
#include "elfcheck.h"

int main(int argc, char **argv) {
    (void)argc;
    int rc = compile(argv);
    if (rc) return rc;
    return object_undecided(argv[1]) ? 100 : 0;
}
