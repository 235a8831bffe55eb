#pragma once
// The pieces of systemd's protocol the daemons use. Without systemd (dev stack) they do nothing.

#include <chrono>
#include <optional>
#include <string_view>

namespace kiln::util {

// The first socket passed by socket activation (LISTEN_FDS), or nullopt.
std::optional<int> inherited_socket();

// sd_notify("READY=1"), "STOPPING=1", "WATCHDOG=1", "STATUS=..."; ignored without NOTIFY_SOCKET.
void notify(std::string_view state);

// Half the watchdog interval systemd asked for (WATCHDOG_USEC), or nullopt when none.
std::optional<std::chrono::milliseconds> watchdog_interval();

}  // namespace kiln::util
