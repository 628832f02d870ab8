//! Unit tests of the configuration layout (selectors, defaults, stored keys).

use super::*;

fn selector(group: &str, label: &str, keys: &[&str]) -> Selector {
    Selector::new(
        "app".into(),
        group.into(),
        label.into(),
        keys.iter().map(|k| k.to_string()).collect(),
    )
    .unwrap()
}

fn path<'a>(group: &'a str, label: &'a str, key: &'a str) -> ItemPath<'a> {
    ItemPath {
        app_id: "app",
        group,
        label,
        key,
    }
}

#[test]
fn stored_keys_are_items_or_their_tags() {
    let item = path("g", "l", "k");
    assert_eq!(StoredKey::parse("/app/g/l/k"), Some(StoredKey::Item(item)));
    assert_eq!(
        StoredKey::parse("/app/g/l/k/env"),
        Some(StoredKey::Tag(item, "env"))
    );
    assert_eq!(item.stored(), "/app/g/l/k");
    assert_eq!(item.tag_key("env"), "/app/g/l/k/env");
    assert_eq!(
        StoredKey::parse("/app///k"),
        Some(StoredKey::Item(path("", "", "k")))
    );
    for bad in [
        "app/g/l/k",
        "/app/g/l",
        "//g/l/k",
        "/app/g/l/",
        "/app/g/l/k/",
        "/app/g/l/k/t/deeper",
    ] {
        assert_eq!(StoredKey::parse(bad), None, "{bad}");
    }
}

#[test]
fn assembles_items_with_their_tags_whatever_sorts_between() {
    let entries: Vec<(&str, &[u8])> = vec![
        ("/app/g/l/k", b"v"),
        ("/app/g/l/k-2", b"w"), // sorts between k and k's tags
        ("/app/g/l/k/env", b"prod"),
        ("/app/g/l/orphan/env", b"lost"),
        ("/app/g/l/k/t/deeper", b"ignored"),
    ];
    let items = assemble(&entries);
    let env = HashMap::from([("env".to_owned(), "prod".to_owned())]);
    assert_eq!(
        items,
        vec![
            path("g", "l", "k").item("v".into(), env),
            path("g", "l", "k-2").item("w".into(), HashMap::new()),
        ]
    );
}

#[test]
fn blank_parts_are_the_defaults_and_stars_match_any() {
    let defaults = selector("", " ", &[]);
    assert_eq!(
        (defaults.group.as_str(), defaults.label.as_str()),
        ("default", "default")
    );
    let item = |g: &str, l: &str, k: &str| path(g, l, k).item(String::new(), HashMap::new());
    let items = [
        item("g", "l", "a"),
        item("g", "l", "b"),
        item("h", "l", "a"),
        item("default", "default", "a"),
    ];
    assert_eq!(defaults.select(&items), [items[3].clone()]);
    assert_eq!(selector("*", "*", &[]).select(&items), items);
    assert_eq!(
        selector("*", "l", &["a"]).select(&items),
        [items[0].clone(), items[2].clone()]
    );
    assert_eq!(
        selector("g", "l", &["b", "*", "b"]).select(&items),
        [items[1].clone(), items[0].clone()],
        "in the order of the keys, each item once"
    );
    assert_eq!(selector("*", "*", &[]).prefix(), "/app/");
    assert_eq!(selector("g", "*", &[]).prefix(), "/app/g/");
    assert_eq!(selector("*", "l", &[]).prefix(), "/app/");
    assert_eq!(selector("g", "l", &["k"]).prefix(), "/app/g/l/");
    let deletion = selector("", "", &["k", "*"]);
    let named: Vec<_> = deletion.named().collect();
    assert_eq!(
        named,
        [
            path("default", "default", "k"),
            path("default", "default", "*")
        ]
    );
    assert_eq!(selector("g", "l", &[]).named().count(), 0);
}

#[test]
fn saves_get_defaults_lose_metadata_and_keep_the_last_of_twins() {
    let item = |group: &str, key: &str, content: &str| ConfigurationItem {
        key: key.into(),
        content: content.into(),
        group: group.into(),
        metadata: HashMap::from([("m".to_owned(), "v".to_owned())]),
        ..Default::default()
    };
    let prepared = prepare_items(vec![
        item("", "a", "1"),
        item("g", "b", "2"),
        item(" ", "a", "3"),
    ])
    .unwrap();
    let contents: Vec<_> = prepared
        .iter()
        .map(|i| (i.group.as_str(), i.label.as_str(), i.content.as_str()))
        .collect();
    assert_eq!(
        contents,
        [("g", "default", "2"), ("default", "default", "3")]
    );
    assert!(prepared.iter().all(|i| i.metadata.is_empty()));
}

#[test]
fn rejects_parts_that_would_break_the_layout() {
    let err = |app: &str, group: &str, keys: &[&str]| {
        Selector::new(
            app.into(),
            group.into(),
            String::new(),
            keys.iter().map(|k| k.to_string()).collect(),
        )
        .unwrap_err()
        .to_string()
    };
    assert_eq!(err("", "", &[]), "app_id is empty");
    assert!(err("a/b", "", &[]).contains("must not contain '/'"));
    assert!(err("a", "g/h", &[]).starts_with("group \"g/h\""));
    assert_eq!(err("a", "", &[""]), "a configuration key is empty");
    assert!(err("a", "", &["k/t"]).starts_with("configuration key \"k/t\""));
    assert!(prepare_items(vec![]).is_err());
    let tagged = ConfigurationItem {
        key: "k".into(),
        tags: HashMap::from([("a/b".to_owned(), "v".to_owned())]),
        ..Default::default()
    };
    assert!(prepare_items(vec![tagged]).is_err());
}
