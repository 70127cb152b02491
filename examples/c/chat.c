/*
 * chat.c: a streaming chat on libwasmchord.
 *
 *   cc -o chat chat.c $(pkg-config --cflags --libs wasmchord)
 *   ./chat model.gguf [-n MAX_TOKENS] [--temp T] [--seed S] [--ctx N]
 *                     [--template NAME] [--system TEXT]
 *
 * Reads one user message per line from stdin and streams each reply to
 * stdout, followed by a newline. The model's own chat template is used
 * (or the built-in NAME, or "chatml" when the model has none). The whole
 * conversation is re-sent each turn; the session reuses the cached prefix.
 * Diagnostics go to stderr.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wasmchord.h"

/* Prints the failed call, the code and the thread's last error message. */
static int fail(const char *what, wasmchord_result r) {
    char msg[512];
    size_t n = wasmchord_last_error_message(msg, sizeof msg);
    fprintf(stderr, "%s failed: %s: %s\n", what, wasmchord_result_name((int)r),
            n < sizeof msg ? msg : "(message too long)");
    return 1;
}

static bool on_progress(float progress, void *user_data) {
    (void)user_data;
    fprintf(stderr, "\rloading %3d%%", (int)(progress * 100.0f + 0.5f));
    if (progress >= 1.0f) fputc('\n', stderr);
    return true; /* false would cancel the load */
}

/* A growable string: the assistant's reply, kept for the next turn. */
typedef struct {
    char *data;
    size_t len, cap;
} text_buf;

static bool on_text(const char *text, size_t len, void *user_data) {
    text_buf *reply = (text_buf *)user_data;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    if (reply->len + len + 1 > reply->cap) {
        size_t cap = (reply->len + len + 1) * 2;
        char *p = (char *)realloc(reply->data, cap);
        if (!p) return false; /* stop generating */
        reply->data = p;
        reply->cap = cap;
    }
    memcpy(reply->data + reply->len, text, len);
    reply->len += len;
    reply->data[reply->len] = '\0';
    return true;
}

/* Duplicates a string (strdup is not ISO C). */
static char *copy(const char *s, size_t len) {
    char *p = (char *)malloc(len + 1);
    if (p) {
        memcpy(p, s, len);
        p[len] = '\0';
    }
    return p;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.gguf [-n N] [--temp T] [--seed S] [--ctx N] "
                        "[--template NAME] [--system TEXT]\n", argv[0]);
        return 2;
    }
    wasmchord_generate_params gen = wasmchord_generate_params_default();
    wasmchord_session_params sp = wasmchord_session_params_default();
    const char *template_name = NULL, *system_prompt = NULL;
    gen.max_tokens = 128;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "-n")) gen.max_tokens = (uint32_t)strtoul(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--temp")) gen.temperature = strtof(argv[i + 1], NULL);
        else if (!strcmp(argv[i], "--seed")) gen.seed = strtoull(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--ctx")) sp.n_ctx = (uint32_t)strtoul(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--template")) template_name = argv[i + 1];
        else if (!strcmp(argv[i], "--system")) system_prompt = argv[i + 1];
        else {
            fprintf(stderr, "unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (wasmchord_abi_version() >> 16 != WASMCHORD_ABI_VERSION_MAJOR) {
        fprintf(stderr, "libwasmchord ABI %u does not match the header\n",
                wasmchord_abi_version() >> 16);
        return 1;
    }

    wasmchord_model_params mp = wasmchord_model_params_default();
    mp.backend = "cpu";
    mp.progress = on_progress;
    wasmchord_model *model = NULL;
    wasmchord_result r = wasmchord_model_load_file(argv[1], &mp, &model);
    if (r != WASMCHORD_OK) return fail("loading the model", r);

    wasmchord_model_info info;
    info.size = sizeof info;
    if ((r = wasmchord_model_get_info(model, &info)) != WASMCHORD_OK) {
        wasmchord_model_free(model);
        return fail("model info", r);
    }
    fprintf(stderr, "libwasmchord %s: %s, %u layers, vocabulary of %u, backend %s\n",
            wasmchord_version(), info.arch, info.n_layer, info.n_vocab, info.backend);

    wasmchord_chat_template *tmpl = NULL;
    r = wasmchord_chat_template_new(model, template_name, &tmpl);
    if (r == WASMCHORD_NO_CHAT_TEMPLATE) {
        fprintf(stderr, "the model has no chat template; using chatml\n");
        r = wasmchord_chat_template_new(NULL, "chatml", &tmpl);
    }
    if (r != WASMCHORD_OK) {
        wasmchord_model_free(model);
        return fail("chat template", r);
    }

    wasmchord_session *session = NULL;
    if ((r = wasmchord_session_new(model, &sp, &session)) != WASMCHORD_OK) {
        wasmchord_chat_template_free(tmpl);
        wasmchord_model_free(model);
        return fail("session", r);
    }

    /* The conversation: messages own their strings. */
    wasmchord_chat_message *msgs = NULL;
    size_t n_msgs = 0;
    char *prompt = NULL;
    uint32_t *tokens = NULL;
    int status = 0;
    char line[4096];

    if (system_prompt) {
        msgs = (wasmchord_chat_message *)malloc(sizeof *msgs);
        if (!msgs) return 1;
        msgs[0].role = copy("system", 6);
        msgs[0].content = copy(system_prompt, strlen(system_prompt));
        n_msgs = 1;
    }

    while (fgets(line, sizeof line, stdin)) {
        size_t len = strcspn(line, "\r\n");
        if (len == 0) continue;
        wasmchord_chat_message *grown =
            (wasmchord_chat_message *)realloc(msgs, (n_msgs + 2) * sizeof *msgs);
        if (!grown) { status = 1; break; }
        msgs = grown;
        msgs[n_msgs].role = copy("user", 4);
        msgs[n_msgs].content = copy(line, len);
        n_msgs++;

        /* Render: ask for the size, then fill. */
        size_t prompt_len = 0;
        r = wasmchord_chat_template_render(tmpl, msgs, n_msgs, true, NULL, 0, &prompt_len);
        if (r != WASMCHORD_BUFFER_TOO_SMALL) { status = fail("rendering", r); break; }
        free(prompt);
        prompt = (char *)malloc(prompt_len + 1);
        if (!prompt) { status = 1; break; }
        r = wasmchord_chat_template_render(tmpl, msgs, n_msgs, true, prompt, prompt_len + 1,
                                           &prompt_len);
        if (r != WASMCHORD_OK) { status = fail("rendering", r); break; }

        /* Tokenize: the template writes its own special tokens. */
        size_t n_tokens = 0;
        r = wasmchord_tokenize(model, prompt, prompt_len, false, true, NULL, 0, &n_tokens);
        if (r != WASMCHORD_BUFFER_TOO_SMALL && r != WASMCHORD_OK) {
            status = fail("tokenizing", r);
            break;
        }
        free(tokens);
        tokens = (uint32_t *)malloc((n_tokens ? n_tokens : 1) * sizeof *tokens);
        if (!tokens) { status = 1; break; }
        r = wasmchord_tokenize(model, prompt, prompt_len, false, true, tokens, n_tokens, &n_tokens);
        if (r != WASMCHORD_OK) { status = fail("tokenizing", r); break; }

        text_buf reply = {NULL, 0, 0};
        wasmchord_generation stats;
        stats.size = sizeof stats;
        r = wasmchord_generate(session, tokens, n_tokens, &gen, on_text, &reply, &stats);
        fputc('\n', stdout);
        fflush(stdout);
        if (r != WASMCHORD_OK) {
            free(reply.data);
            status = fail("generating", r);
            break;
        }
        fprintf(stderr, "[%u prompt tokens evaluated, %u generated, stop %d]\n",
                stats.n_prompt_eval, stats.n_tokens, (int)stats.stop);
        msgs[n_msgs].role = copy("assistant", 9);
        msgs[n_msgs].content = reply.data ? reply.data : copy("", 0);
        n_msgs++;
    }

    for (size_t i = 0; i < n_msgs; i++) {
        free((void *)msgs[i].role);
        free((void *)msgs[i].content);
    }
    free(msgs);
    free(prompt);
    free(tokens);
    wasmchord_session_free(session);
    wasmchord_chat_template_free(tmpl);
    wasmchord_model_free(model);
    return status;
}
