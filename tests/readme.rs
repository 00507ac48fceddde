//! The README's Rust snippets are whole programs: pasted into a `main.rs`
//! they compile as they are (the doctests in `src/lib.rs` compile and run
//! them). rustdoc hides lines starting with `# ` and wraps a snippet without
//! `fn main` in one, so neither may be relied on.

#[test]
fn readme_rust_snippets_are_whole_programs() {
    let readme = include_str!("../README.md");
    let mut snippets = 0;
    let mut lines = readme.lines().enumerate();
    while let Some((at, line)) = lines.next() {
        let Some(info) = line.strip_prefix("```rust") else {
            continue;
        };
        let body: Vec<&str> = lines
            .by_ref()
            .map(|(_, l)| l)
            .take_while(|l| !l.starts_with("```"))
            .collect();
        if info.contains("ignore") {
            continue; // shown for reading only (needs a feature)
        }
        snippets += 1;
        let line_no = at + 1;
        assert!(
            !body
                .iter()
                .any(|l| l.trim_start().starts_with("# ") || l.trim() == "#"),
            "README.md:{line_no}: a snippet with lines rustdoc hides"
        );
        assert!(
            body.iter().any(|l| l.starts_with("fn main(")),
            "README.md:{line_no}: a snippet without `fn main`"
        );
    }
    assert!(snippets >= 2, "found {snippets} Rust snippets in README.md");
}
