// chat.cpp: a streaming chat on libwasmchord, with RAII handles.
//
//   c++ -std=c++17 -o chat chat.cpp $(pkg-config --cflags --libs wasmchord)
//   ./chat model.gguf [-n MAX_TOKENS] [--temp T] [--seed S] [--ctx N]
//                     [--template NAME] [--system TEXT]
//
// Same behaviour as examples/c/chat.c: one user message per stdin line,
// each reply streamed to stdout and followed by a newline.
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "wasmchord.h"

namespace wc {

// Throws with the code's name and the thread's last error message.
[[noreturn]] void raise(const char *what, wasmchord_result r) {
    std::string msg(wasmchord_last_error_message(nullptr, 0) + 1, '\0');
    size_t n = wasmchord_last_error_message(msg.data(), msg.size());
    msg.resize(n < msg.size() ? n : 0);
    throw std::runtime_error(std::string(what) + ": " + wasmchord_result_name(r) + ": " + msg);
}

void check(const char *what, wasmchord_result r) {
    if (r != WASMCHORD_OK) raise(what, r);
}

struct ModelFree { void operator()(wasmchord_model *m) const { wasmchord_model_free(m); } };
struct SessionFree { void operator()(wasmchord_session *s) const { wasmchord_session_free(s); } };
struct TemplateFree {
    void operator()(wasmchord_chat_template *t) const { wasmchord_chat_template_free(t); }
};
using Model = std::unique_ptr<wasmchord_model, ModelFree>;
using Session = std::unique_ptr<wasmchord_session, SessionFree>;
using Template = std::unique_ptr<wasmchord_chat_template, TemplateFree>;

Model load(const char *path) {
    wasmchord_model_params p = wasmchord_model_params_default();
    p.backend = "cpu";
    wasmchord_model *m = nullptr;
    check("loading the model", wasmchord_model_load_file(path, &p, &m));
    return Model(m);
}

Template chat_template(const wasmchord_model *model, const char *name) {
    wasmchord_chat_template *t = nullptr;
    wasmchord_result r = wasmchord_chat_template_new(model, name, &t);
    if (r == WASMCHORD_NO_CHAT_TEMPLATE) {
        std::cerr << "the model has no chat template; using chatml\n";
        r = wasmchord_chat_template_new(nullptr, "chatml", &t);
    }
    check("chat template", r);
    return Template(t);
}

// Size negotiation: ask for the length, then fill.
std::string render(const wasmchord_chat_template *t, const std::vector<std::string> &roles,
                   const std::vector<std::string> &contents) {
    std::vector<wasmchord_chat_message> msgs;
    for (size_t i = 0; i < roles.size(); i++)
        msgs.push_back({roles[i].c_str(), contents[i].c_str()});
    size_t len = 0;
    wasmchord_result r =
        wasmchord_chat_template_render(t, msgs.data(), msgs.size(), true, nullptr, 0, &len);
    if (r != WASMCHORD_BUFFER_TOO_SMALL) raise("rendering", r);
    std::string out(len + 1, '\0');
    check("rendering", wasmchord_chat_template_render(t, msgs.data(), msgs.size(), true,
                                                      out.data(), out.size(), &len));
    out.resize(len);
    return out;
}

std::vector<uint32_t> tokenize(const wasmchord_model *m, const std::string &text) {
    size_t n = 0;
    wasmchord_result r = wasmchord_tokenize(m, text.data(), text.size(), false, true, nullptr, 0, &n);
    if (r != WASMCHORD_BUFFER_TOO_SMALL && r != WASMCHORD_OK) raise("tokenizing", r);
    std::vector<uint32_t> ids(n);
    check("tokenizing", wasmchord_tokenize(m, text.data(), text.size(), false, true, ids.data(),
                                           ids.size(), &n));
    ids.resize(n);
    return ids;
}

}  // namespace wc

int main(int argc, char **argv) try {
    if (argc < 2) {
        std::cerr << "usage: " << argv[0]
                  << " MODEL.gguf [-n N] [--temp T] [--seed S] [--ctx N] [--template NAME] "
                     "[--system TEXT]\n";
        return 2;
    }
    wasmchord_generate_params gen = wasmchord_generate_params_default();
    wasmchord_session_params sp = wasmchord_session_params_default();
    const char *template_name = nullptr;
    const char *system_prompt = nullptr;
    gen.max_tokens = 128;
    for (int i = 2; i + 1 < argc; i += 2) {
        std::string opt = argv[i];
        if (opt == "-n") gen.max_tokens = static_cast<uint32_t>(std::stoul(argv[i + 1]));
        else if (opt == "--temp") gen.temperature = std::stof(argv[i + 1]);
        else if (opt == "--seed") gen.seed = std::stoull(argv[i + 1]);
        else if (opt == "--ctx") sp.n_ctx = static_cast<uint32_t>(std::stoul(argv[i + 1]));
        else if (opt == "--template") template_name = argv[i + 1];
        else if (opt == "--system") system_prompt = argv[i + 1];
        else throw std::runtime_error("unknown option " + opt);
    }

    if (wasmchord_abi_version() >> 16 != WASMCHORD_ABI_VERSION_MAJOR)
        throw std::runtime_error("libwasmchord ABI does not match the header");
    wc::Model model = wc::load(argv[1]);
    wasmchord_model_info info{};
    info.size = sizeof info;
    wc::check("model info", wasmchord_model_get_info(model.get(), &info));
    std::cerr << "libwasmchord " << wasmchord_version() << ": " << info.arch << ", "
              << info.n_layer << " layers, vocabulary of " << info.n_vocab << ", backend "
              << info.backend << "\n";
    wc::Template tmpl = wc::chat_template(model.get(), template_name);
    wasmchord_session *raw = nullptr;
    wc::check("session", wasmchord_session_new(model.get(), &sp, &raw));
    wc::Session session(raw);

    std::vector<std::string> roles, contents;
    if (system_prompt) {
        roles.emplace_back("system");
        contents.emplace_back(system_prompt);
    }
    std::string line;
    while (std::getline(std::cin, line)) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.empty()) continue;
        roles.emplace_back("user");
        contents.push_back(line);
        std::vector<uint32_t> ids = wc::tokenize(model.get(), wc::render(tmpl.get(), roles, contents));

        // A capture-less trampoline carries the lambda's state in user_data.
        std::string reply;
        auto on_text = [](const char *text, size_t len, void *user_data) -> bool {
            static_cast<std::string *>(user_data)->append(text, len);
            std::fwrite(text, 1, len, stdout);
            std::fflush(stdout);
            return true;
        };
        wasmchord_generation stats{};
        stats.size = sizeof stats;
        wasmchord_result r = wasmchord_generate(session.get(), ids.data(), ids.size(), &gen,
                                                on_text, &reply, &stats);
        std::fputc('\n', stdout);
        std::fflush(stdout);
        wc::check("generating", r);
        std::cerr << "[" << stats.n_prompt_eval << " prompt tokens evaluated, " << stats.n_tokens
                  << " generated, stop " << static_cast<int>(stats.stop) << "]\n";
        roles.emplace_back("assistant");
        contents.push_back(reply);
    }
    return 0;
} catch (const std::exception &e) {
    std::cerr << e.what() << "\n";
    return 1;
}
