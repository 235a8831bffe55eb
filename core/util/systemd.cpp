#include "core/util/systemd.hpp"

#include <systemd/sd-daemon.h>

#include <string>

namespace kiln::util {

std::optional<int> inherited_socket() {
    if (sd_listen_fds(1) >= 1) return SD_LISTEN_FDS_START;
    return std::nullopt;
}

void notify(std::string_view state) { sd_notify(0, std::string(state).c_str()); }

std::optional<std::chrono::milliseconds> watchdog_interval() {
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0) return std::nullopt;
    return std::chrono::milliseconds(usec / 2000);
}

}  // namespace kiln::util
