use crate::util::*;

#[test]
fn probe_prints_text_and_json() {
    let out = vidgate().arg("probe").arg(testsrc_30s_audio()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("h264 320x180") && text.contains("audio      aac"), "{text}");

    let out = vidgate().args(["probe", "--json"]).arg(testsrc_10s()).output().unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["duration_ms"], 10_000);
    assert_eq!(json["video"]["width"], 320);
}

#[test]
fn frames_writes_jpegs_and_lists_them() {
    let dir = tempfile::tempdir().unwrap();
    let out = vidgate()
        .args(["frames", "--fps", "0.5", "--width", "128", "--start", "2", "--end", "0:08", "--json", "--out"])
        .arg(dir.path())
        .arg(testsrc_10s())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let times: Vec<u64> = list.iter().map(|f| f["pts_ms"].as_u64().unwrap()).collect();
    assert_eq!(times, [2000, 4000, 6000]);
    for f in &list {
        let bytes = std::fs::read(f["path"].as_str().unwrap()).unwrap();
        assert_eq!(jpeg_size(&bytes), Some((128, 96)));
    }
    assert!(out.stderr.is_empty(), "no progress bar off a terminal: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn frames_modes_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    for (i, (args, count)) in
        [(vec!["--keyframes"], 5), (vec!["--count", "3"], 3), (vec!["--scenes", "--threshold", "0.4"], 1)]
            .into_iter()
            .enumerate()
    {
        // A directory each: frames are never written over earlier ones.
        let out = vidgate()
            .arg("frames")
            .args(&args)
            .arg("--json")
            .arg("--out")
            .arg(dir.path().join(i.to_string()))
            .arg(testsrc_10s())
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(list.len(), count, "{args:?}");
    }
}

#[test]
fn errors_are_one_line_and_a_non_zero_exit() {
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["probe".into(), "/nonexistent/clip.mp4".into()], "/nonexistent/clip.mp4: no such file"),
        (
            vec![
                "frames".into(),
                "--out".into(),
                "x".into(),
                "--start".into(),
                "soon".into(),
                testsrc_10s().display().to_string(),
            ],
            "--start `soon`",
        ),
        (
            vec![
                "frames".into(),
                "--out".into(),
                "x".into(),
                "--width".into(),
                "4".into(),
                testsrc_10s().display().to_string(),
            ],
            "sampling.width",
        ),
        (vec!["probe".into(), "--config".into(), "/nonexistent/v.toml".into(), "x.mp4".into()], "/nonexistent/v.toml"),
    ];
    for (args, expected) in cases {
        let out = vidgate().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("vidgate: error: ") && err.contains(expected), "{args:?}: {err}");
        assert!(!err.contains("panicked") && !err.contains("backtrace"), "{err}");
    }
}

#[test]
fn a_closed_pipe_is_not_an_error() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let mut child = vidgate()
        .args(["frames", "--fps", "5", "--width", "64", "--out"])
        .arg(dir.path())
        .arg(testsrc_10s())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 8];
    child.stdout.as_mut().unwrap().read_exact(&mut first).unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
