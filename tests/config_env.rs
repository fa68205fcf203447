//! Environment layers, in their own process so no other test sees the variables.

use std::io::Write;

use vidgate::config::{Config, ConfigSources};

#[test]
fn environment_sits_between_the_file_and_the_flags() {
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    f.write_all(b"[sampling]\nfps = 2.0\nwidth = 320\nmax_frames = 10\n").unwrap();
    std::env::set_var("VIDGATE__SAMPLING__WIDTH", "640");
    std::env::set_var("VIDGATE__SAMPLING__MAX_FRAMES", "20");
    std::env::set_var("VIDGATE_CONFIG", f.path());

    let sources = ConfigSources { use_env: true, ..Default::default() }.with_override("sampling.max_frames", 30);
    let cfg = Config::load(&sources).unwrap();
    assert_eq!(cfg.sampling.fps, 2.0, "from $VIDGATE_CONFIG");
    assert_eq!(cfg.sampling.width, 640, "env beats the file");
    assert_eq!(cfg.sampling.max_frames, 30, "flags beat env");

    std::env::set_var("VIDGATE__SAMPLING__WIDHT", "640");
    let msg = Config::load(&sources).unwrap_err().to_string();
    assert!(msg.contains("VIDGATE__SAMPLING__WIDHT") && msg.contains("widht"), "{msg}");
    std::env::remove_var("VIDGATE__SAMPLING__WIDHT");

    std::env::set_var("VIDGATE__SAMPLING__FPS", "abc");
    let msg = Config::load(&sources).unwrap_err().to_string();
    assert!(msg.contains("VIDGATE__SAMPLING__FPS") && msg.contains("sampling.fps"), "{msg}");
}
