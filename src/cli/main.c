/* main.c: the `beast` command: dispatch to subcommands. */
#include "cli/cli.h"

#include <stdio.h>
#include <string.h>

static const char USAGE[] =
    "usage: beast <command> [options]\n"
    "\n"
    "commands:\n"
    "  run    generate text from a prompt         beast run -p \"Hello\" [--chat]\n"
    "  chat   interactive chat                    beast chat [-m MODEL]\n"
    "  info   describe a GGUF model               beast info MODEL\n"
    "  bench  measure prompt and generation speed beast bench [-m MODEL] [-p 512] [-n 128]\n"
#ifdef BEAST_HAVE_SERVER
    "  serve  OpenAI/Ollama-compatible server     beast serve [-m MODEL] [--port 8080]\n"
#endif
    "\n"
    "`beast <command> --help` lists a command's options.\n";

int main(int argc, char **argv) {
    if (argc < 2) {
        fputs(USAGE, stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        fputs(USAGE, stdout);
        return 0;
    }
    /* llama.cpp's -ngl N: a single-dash long option that getopt would read
     * as -n "gl"; every command that takes it also takes --gpu-layers N */
    static char gpu_layers[] = "--gpu-layers";
    for (int i = 2; i < argc; i++)
        if (!strcmp(argv[i], "-ngl")) argv[i] = gpu_layers;
    if (!strcmp(cmd, "run")) return cmd_run(argc - 1, argv + 1);
    if (!strcmp(cmd, "chat")) return cmd_chat(argc - 1, argv + 1);
    if (!strcmp(cmd, "info")) return cmd_info(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench")) return cmd_bench(argc - 1, argv + 1);
#ifdef BEAST_HAVE_SERVER
    if (!strcmp(cmd, "serve")) return cmd_serve(argc - 1, argv + 1);
#endif
    fprintf(stderr, "beast: unknown command '%s'\n\n%s", cmd, USAGE);
    return 2;
}
