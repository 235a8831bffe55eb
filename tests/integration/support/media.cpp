#include "tests/integration/support/media.hpp"

#include "tests/integration/support/stack.hpp"

namespace kiln::test {

const Media& Media::get() {
    static const Media media = [] {
        Media m;
        const auto& dir = scratch_dir();
        m.png = dir / "pattern.png";
        m.jpeg = dir / "pattern.jpg";
        m.mp4 = dir / "clip.mp4";
        run_command({"ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                     "testsrc=size=64x48:rate=1", "-frames:v", "1", m.png.string()});
        run_command({"ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                     "testsrc=size=64x48:rate=1", "-frames:v", "1", m.jpeg.string()});
        run_command({"ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                     "testsrc=size=160x120:rate=10", "-t", "2", "-c:v", "libx264", "-pix_fmt",
                     "yuv420p", m.mp4.string()});
        return m;
    }();
    return media;
}

}  // namespace kiln::test
