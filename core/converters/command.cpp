#include "core/converters/command.hpp"

#include <fmt/format.h>

namespace kiln::converters {

bool needs_duration(const std::vector<std::string>& args_template) {
    for (const auto& arg : args_template) {
        if (arg.find("{seek:") != std::string::npos) return true;
    }
    return false;
}

namespace {

std::string param_text(const nlohmann::json& value) {
    if (value.is_string()) return value.get<std::string>();
    if (value.is_boolean()) return value.get<bool>() ? "true" : "false";
    return value.dump();  // integers
}

bool has_param(const nlohmann::json& params, const std::string& name) {
    return params.is_object() && params.contains(name) && !params[name].is_null();
}

// Replaces every {NAME}, {input} and {output:STEM} in `text`.
Result<std::string> substitute(const std::string& text, const ExpansionContext& ctx) {
    std::string out;
    std::size_t pos = 0;
    while (pos < text.size()) {
        auto open = text.find('{', pos);
        if (open == std::string::npos) {
            out.append(text, pos);
            break;
        }
        out.append(text, pos, open - pos);
        auto close = text.find('}', open);
        if (close == std::string::npos) {
            return fail(ErrorCode::config, "unterminated '{' in argument '" + text + "'");
        }
        const std::string name = text.substr(open + 1, close - open - 1);
        if (name == "input") {
            out += ctx.input.string();
        } else if (name.starts_with("output:")) {
            const std::string stem = name.substr(7) + ".";
            bool found = false;
            for (const auto& o : ctx.outputs) {
                if (o.starts_with(stem)) {
                    out += (ctx.workdir / o).string();
                    found = true;
                    break;
                }
            }
            if (!found) return fail(ErrorCode::config, "no declared output for {" + name + "}");
        } else if (name.starts_with("seek:")) {
            double seconds = 0;
            try {
                seconds = std::stod(name.substr(5));
            } catch (const std::exception&) {
                return fail(ErrorCode::config, "{" + name + "} needs a number of seconds");
            }
            if (ctx.duration > 0) seconds = std::min(seconds, ctx.duration / 2);
            out += fmt::format("{:.3f}", seconds);
        } else if (has_param(ctx.params, name)) {
            out += param_text(ctx.params[name]);
        } else {
            return fail(ErrorCode::config, "argument uses {" + name + "}, which has no value");
        }
        pos = close + 1;
    }
    return out;
}

}  // namespace

Result<std::string> expand_output_name(const std::string& name_template,
                                       const nlohmann::json& params) {
    ExpansionContext ctx;
    ctx.params = params;
    auto name = substitute(name_template, ctx);
    if (!name) return fail(ErrorCode::invalid_request, name.error().message);
    if (name->empty() || name->find('/') != std::string::npos || name->front() == '.' ||
        name->size() > 128) {
        return fail(ErrorCode::invalid_request, "output name '" + *name + "' is not a file name");
    }
    return name;
}

Result<std::vector<std::string>> expand_args(const std::vector<std::string>& args_template,
                                             const ExpansionContext& ctx) {
    std::vector<std::string> argv;
    for (const auto& arg : args_template) {
        std::string text = arg;
        if (text.starts_with("{?") || text.starts_with("{!")) {
            const bool when_set = text[1] == '?';
            auto close = text.find('}');
            if (close == std::string::npos) {
                return fail(ErrorCode::config, fmt::format("unterminated '{}' in argument '{}'",
                                                           text.substr(0, 2), arg));
            }
            const std::string condition = text.substr(2, close - 2);
            text = text.substr(close + 1);
            const auto eq = condition.find('=');
            if (!when_set && eq != std::string::npos) {
                return fail(
                    ErrorCode::config,
                    "'{!...}' takes a param name only, not a value, in argument '" + arg + "'");
            }
            // {?NAME} / {?NAME=VALUE} keep the argument when this holds, {!NAME} when it does not.
            const std::string name = condition.substr(0, eq);
            const bool holds = has_param(ctx.params, name) &&
                               (eq == std::string::npos ||
                                param_text(ctx.params[name]) == condition.substr(eq + 1));
            if (holds != when_set) continue;
        }
        auto expanded = substitute(text, ctx);
        if (!expanded) return std::unexpected(expanded.error());
        argv.push_back(std::move(*expanded));
    }
    return argv;
}

}  // namespace kiln::converters
