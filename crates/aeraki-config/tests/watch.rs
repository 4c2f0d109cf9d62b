//! The directory watcher: a valid change arrives as a new view within a second; an invalid
//! one arrives as errors (the caller keeps its last good view).

#![allow(clippy::unwrap_used, reason = "test helpers outside #[test] fns")]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use aeraki_config::{load_dir, watch_dir};

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!(
            "aeraki-config-{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn se(name: &str, port: u16) -> String {
    format!(
        "apiVersion: networking.istio.io/v1beta1\nkind: ServiceEntry\nmetadata: {{name: {name}, namespace: demo}}\nspec:\n  hosts: [{name}.demo]\n  addresses: [127.0.10.1]\n  ports: [{{number: {port}, name: tcp-metaprotocol-dubbo}}]\n  resolution: STATIC\n  endpoints: [{{address: 127.0.0.1}}]\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_reach_the_watcher_within_a_second() {
    let dir = TempDir::new("watch");
    std::fs::write(dir.0.join("a.yaml"), se("a", 20880)).unwrap();
    let initial = load_dir(&dir.0).unwrap();
    assert_eq!(initial.view.services.len(), 1);
    let mut w = watch_dir(&dir.0).unwrap();

    // A valid new file, in a subdirectory.
    std::fs::create_dir_all(dir.0.join("sub")).unwrap();
    let start = Instant::now();
    std::fs::write(dir.0.join("sub/b.yml"), se("b", 20881)).unwrap();
    let got = tokio::time::timeout(Duration::from_secs(1), w.recv())
        .await
        .expect("no reload within 1 s")
        .unwrap()
        .unwrap();
    assert!(start.elapsed() < Duration::from_secs(1));
    let hosts: Vec<&str> = got.view.services.iter().map(|s| s.host.as_str()).collect();
    assert_eq!(hosts, ["a.demo", "b.demo"]);

    // An invalid edit: errors, naming the file and field.
    std::fs::write(dir.0.join("a.yaml"), se("a", 0)).unwrap();
    let got = tokio::time::timeout(Duration::from_secs(1), w.recv())
        .await
        .expect("no reload within 1 s")
        .unwrap();
    let e = got.unwrap_err().to_string();
    assert_eq!(
        e,
        "a.yaml: document 1 (ServiceEntry demo/a): spec.ports[0].number: port number 0 is out of range 1-65535"
    );

    // Files that are not config (editor temporaries) do not trigger a reload.
    std::fs::write(dir.0.join(".a.yaml.swp"), "garbage").unwrap();
    std::fs::write(dir.0.join("notes.txt"), "garbage").unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(600), w.recv())
            .await
            .is_err(),
        "unexpected reload"
    );

    // Fixing it brings a new view.
    std::fs::write(dir.0.join("a.yaml"), se("a", 20882)).unwrap();
    let got = tokio::time::timeout(Duration::from_secs(1), w.recv())
        .await
        .expect("no reload within 1 s")
        .unwrap()
        .unwrap();
    let ports: Vec<u16> = got.view.services.iter().map(|s| s.port).collect();
    assert_eq!(ports, [20882, 20881]);
}
