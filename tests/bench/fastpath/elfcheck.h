/* The no-site verdict from the object alone: 0 = no site can be here (no
   table, no LTO, no GOT reloc, no relocated disp32 after an FF call/jmp
   ModRM in an executable section); 1 = undecided (hand over to Python). */
#include <elf.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static int mem_call_modrm(unsigned modrm, int sib) {
    unsigned mod = modrm >> 6, reg = (modrm >> 3) & 7, rm = modrm & 7;
    if (reg < 2 || reg > 5 || mod != 0) return 0;
    if (sib < 0) return rm == 5;
    return rm == 4 && (sib & 7) == 5 && ((sib >> 3) & 7) == 4;
}

static int cand(const unsigned char *d, unsigned long size, unsigned long o) {
    if (o > size) return 1;
    if (o >= 2 && d[o - 2] == 0xFF && mem_call_modrm(d[o - 1], -1)) return 1;
    if (o >= 3 && d[o - 3] == 0xFF && mem_call_modrm(d[o - 2], d[o - 1])) return 1;
    return 0;
}

#define CHECK(EH, SH, RELA, REL, RSYM_TYPE, GOTCOND) do { \
    const EH *eh = (const EH *)m; \
    if (eh->e_shoff == 0 || eh->e_shentsize != sizeof(SH) || eh->e_shoff + (unsigned long)eh->e_shnum * sizeof(SH) > len) return 1; \
    const SH *sh = (const SH *)(m + eh->e_shoff); \
    unsigned n = eh->e_shnum; if (n == 0 || eh->e_shstrndx >= n) return 1; \
    const SH *ss = &sh[eh->e_shstrndx]; \
    if (ss->sh_offset + ss->sh_size > len) return 1; \
    const char *names = (const char *)(m + ss->sh_offset); \
    for (unsigned i = 0; i < n; i++) { \
        if (sh[i].sh_name >= ss->sh_size) return 1; \
        const char *nm = names + sh[i].sh_name; \
        if (!memchr(nm, 0, ss->sh_size - sh[i].sh_name)) return 1; \
        if (!strcmp(nm, ".parainstructions") || !strncmp(nm, ".gnu.lto_", 9)) return 1; \
    } \
    for (unsigned i = 0; i < n; i++) { \
        int rela = sh[i].sh_type == SHT_RELA; \
        if (!rela && sh[i].sh_type != SHT_REL) continue; \
        if (sh[i].sh_info >= n) return 1; \
        const SH *t = &sh[sh[i].sh_info]; \
        if (!(t->sh_flags & SHF_EXECINSTR) || t->sh_type == SHT_NOBITS) continue; \
        if (t->sh_offset + t->sh_size > len || sh[i].sh_offset + sh[i].sh_size > len) return 1; \
        unsigned long es = rela ? sizeof(RELA) : sizeof(REL); \
        const unsigned char *d = m + t->sh_offset; \
        for (unsigned long k = 0; k + es <= sh[i].sh_size; k += es) { \
            const REL *r = (const REL *)(m + sh[i].sh_offset + k); \
            unsigned long type = RSYM_TYPE(r->r_info); \
            if (GOTCOND) return 1; \
            if (cand(d, t->sh_size, r->r_offset)) return 1; \
        } \
    } \
    return 0; } while (0)

static int object_undecided(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return 1;
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_size < (off_t)sizeof(Elf32_Ehdr)) { close(fd); return 1; }
    unsigned long len = st.st_size;
    const unsigned char *m = mmap(0, len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return 1;
    int r = 1;
    if (!memcmp(m, ELFMAG, SELFMAG) && m[EI_DATA] == ELFDATA2LSB) {
        if (m[EI_CLASS] == ELFCLASS64 && len >= sizeof(Elf64_Ehdr) && ((Elf64_Ehdr *)m)->e_machine == EM_X86_64
            && ((Elf64_Ehdr *)m)->e_type == ET_REL)
            r = ({ int f(void) { CHECK(Elf64_Ehdr, Elf64_Shdr, Elf64_Rela, Elf64_Rel, ELF64_R_TYPE,
                                       type == 9 || type == 41 || type == 42); } f(); });
        else if (m[EI_CLASS] == ELFCLASS32 && ((Elf32_Ehdr *)m)->e_machine == EM_386 && ((Elf32_Ehdr *)m)->e_type == ET_REL)
            r = ({ int f(void) { CHECK(Elf32_Ehdr, Elf32_Shdr, Elf32_Rela, Elf32_Rel, ELF32_R_TYPE,
                                       type == 3 || type == 9 || type == 43); } f(); });
    }
    munmap((void *)m, len);
    return r;
}
