//! Tests of zsmalloc's size-class table against Linux's (lab 3, `docs/labs/lab3-classes.md`):
//! the chain length of every class, which classes merge, and the huge class size, for the
//! chain lengths Linux allows. The expected tables were taken from zsmalloc's rules as Linux
//! 6.3 and later apply them, and agree with the class counts (69, 119, 192 at chains 4, 8,
//! 16) and huge watermarks that Linux's documentation gives.

use alloc::string::String;
use alloc::vec::Vec;

use zsmalloc::class::{
    CLASS_DELTA, ClassTable, HANDLE_SIZE, MAX_ALLOC_SIZE, MIN_ALLOC_SIZE, NUM_CLASSES, PAGE_SIZE,
    chain_length,
};

/// Linux's pages per zspage for each logical class (size 32 + 16·i), one base-36 digit per
/// class, at chain lengths 4, 8 and 16.
const GOLDEN_PAGES: [(usize, &str); 3] = [
    (
        4,
        "131132132433411113412131431424142414323114432331114432233341111444432222333441111111444444443332222223333333444411111111111111144444444444444444433333332222222222222222233333333333333333333334444444444441111111111111111111111111111111111111111111111111111",
    ),
    (
        8,
        "131537175433711157568835677524142718725518532735118578775346811885438522753745571111888865447338572227775833777455566781111111188888888766555444477733338888555772222222277777777755588883333337777777444445555555556666667777788811111111111111111111111111111",
    ),
    (
        16,
        "131537195b3d7f119f5gb83ddf7bf4142g9cfg5dbgbgg93991dbfe7f53fg8g1g8b4ae592b5bgbd5d9c11ggb86g947d3b5c9f2fdg5db3ga74d95g67f9bdg1111ggggdb98fd6bg5e944fb7ad33eeb8d55c7g9bd2222ffffdb9g7c55dd88be3333ggga777bbf44dddd9e555ggb666dd777f88999aabbccdeff1111111111111111",
    ),
];

/// Which logical classes are distinct after merging ('1') and which are served by the next
/// distinct class above them ('0'), at chain lengths 4, 8 and 16.
const GOLDEN_DISTINCT: [(usize, &str); 3] = [
    (
        4,
        "111111111111111111111111111111111111111010111010010110100110001000110001001010000001000000010010000010000001000100000000000000100000000000000000100000010000000000000000100000000000000000000010000000000010000000000000000000000000000000000000000000000000001",
    ),
    (
        8,
        "111111111111111111111111111111111111111111111111011111111111101011111101111110110001000111011011110010011101001100101110000000100000001101001000100100010001001010000000100000000100100010000010000001000010000000010000010000100100000000000000000000000000001",
    ),
    (
        16,
        "111111111111111111111111111111111111111111111111111111111111111111111111111111111101011111111111111111111111111111111111111000100011111111111110111111010111101111111000100011111110101011100010011001011010001110010110010100110100101010111010000000000000001",
    ),
];

/// Linux's huge watermark (the largest class that is not huge) per chain length, from its
/// zsmalloc documentation.
const WATERMARKS: [(usize, usize); 13] = [
    (4, 3264),
    (5, 3408),
    (6, 3504),
    (7, 3584),
    (8, 3632),
    (9, 3680),
    (10, 3712),
    (11, 3744),
    (12, 3776),
    (13, 3792),
    (14, 3808),
    (15, 3840),
    (16, 3840),
];

fn class_size(i: usize) -> usize {
    (MIN_ALLOC_SIZE + i * CLASS_DELTA).min(MAX_ALLOC_SIZE)
}

/// The first few differences, for a readable failure.
fn first_differences(diffs: &[String]) -> String {
    let shown: Vec<&str> = diffs.iter().take(6).map(String::as_str).collect();
    alloc::format!("{} ({} in all)", shown.join("; "), diffs.len())
}

fn chain_lengths_match_linux_at_chains_4_8_and_16() {
    for (chain, golden) in GOLDEN_PAGES {
        let diffs: Vec<String> = golden
            .chars()
            .enumerate()
            .filter_map(|(i, digit)| {
                let want = digit.to_digit(36).expect("a base-36 digit") as usize;
                let got = chain_length(class_size(i), chain);
                (got != want)
                    .then(|| alloc::format!("size {}: {got} pages, Linux {want}", class_size(i)))
            })
            .collect();
        assert!(
            diffs.is_empty(),
            "chain {chain}: {}",
            first_differences(&diffs)
        );
    }
}

fn merged_classes_match_linux_at_chains_4_8_and_16() {
    for (chain, golden) in GOLDEN_DISTINCT {
        let t = ClassTable::new(chain);
        let want: Vec<usize> = golden
            .chars()
            .enumerate()
            .filter(|&(_, c)| c == '1')
            .map(|(i, _)| i)
            .collect();
        let got: Vec<usize> = t.classes.iter().map(|c| c.index).collect();
        assert_eq!(
            got.len(),
            want.len(),
            "chain {chain}: {} distinct classes, Linux has {}",
            got.len(),
            want.len()
        );
        assert_eq!(got, want, "chain {chain}: the distinct classes differ");
        for (i, &pos) in t.alias.iter().enumerate() {
            let served_by = want
                .iter()
                .position(|&d| d >= i)
                .expect("a class serves it");
            assert_eq!(
                pos as usize,
                served_by,
                "chain {chain}: size {} is served by the class at position {pos}, Linux by {served_by}",
                class_size(i)
            );
        }
        for c in &t.classes {
            assert_eq!(
                c.objs_per_zspage,
                c.pages_per_zspage * PAGE_SIZE / c.size,
                "chain {chain}: class {} holds every object that fits",
                c.size
            );
        }
    }
}

fn huge_class_size_matches_linux_at_every_chain_length() {
    for (chain, watermark) in WATERMARKS {
        let t = ClassTable::new(chain);
        assert_eq!(
            t.huge_class_size,
            watermark - (HANDLE_SIZE - 1),
            "chain {chain}: huge_class_size (Linux's huge watermark {watermark} minus the header, plus one)"
        );
        for c in &t.classes {
            assert_eq!(
                c.huge,
                c.size > watermark,
                "chain {chain}: class {} huge = {}",
                c.size,
                c.huge
            );
        }
    }
}

/// Linux's documentation example: objects of 1568 bytes (class 96) pack 13 to a 5-page
/// zspage at chain 8, but merge into class 100 (1632 bytes, 5 objects in 2 pages) at chain 4.
fn the_class_96_example_from_linux_docs() {
    let t8 = ClassTable::new(8);
    let c = &t8.classes[t8.alias[96] as usize];
    assert_eq!(
        (c.index, c.size, c.pages_per_zspage, c.objs_per_zspage),
        (96, 1568, 5, 13),
        "chain 8"
    );
    let t4 = ClassTable::new(4);
    let c = &t4.classes[t4.alias[96] as usize];
    assert_eq!(
        (c.index, c.size, c.pages_per_zspage, c.objs_per_zspage),
        (100, 1632, 2, 5),
        "chain 4"
    );
    assert_eq!(NUM_CLASSES, 255);
}

/// Every request goes to the logical class of the smallest size that holds it with its
/// header, and from there to the class that serves that size.
fn requests_go_to_the_smallest_class_that_holds_them_and_their_header() {
    use zsmalloc::class::logical_index;
    for (bytes_with_header, want) in [
        (1, 0),
        (32, 0),
        (33, 1),
        (48, 1),
        (49, 2),
        (1576, 97),
        (4096, 254),
        (4096 + HANDLE_SIZE, 254),
    ] {
        assert_eq!(
            logical_index(bytes_with_header),
            want,
            "{bytes_with_header} bytes with the header"
        );
    }
    let t = ClassTable::new(8);
    for bytes in 1..=MAX_ALLOC_SIZE {
        let i = logical_index(bytes + HANDLE_SIZE);
        assert!(
            class_size(i) >= (bytes + HANDLE_SIZE).min(MAX_ALLOC_SIZE),
            "{bytes} bytes in class {i} of {} bytes",
            class_size(i)
        );
        assert!(
            i == 0 || class_size(i - 1) < bytes + HANDLE_SIZE,
            "{bytes} bytes fit the smaller class {}",
            i - 1
        );
        assert_eq!(t.class_for(bytes), t.alias[i] as usize, "{bytes} bytes");
    }
}

crate::ktests! {
    // Lab 3: the size-class table (docs/labs/lab3-classes.md).
    chain_lengths_match_linux_at_chains_4_8_and_16 { lab: 3, points: 25 },
    merged_classes_match_linux_at_chains_4_8_and_16 { lab: 3, points: 25 },
    huge_class_size_matches_linux_at_every_chain_length { lab: 3, points: 15 },
    the_class_96_example_from_linux_docs { lab: 3, points: 15 },
    requests_go_to_the_smallest_class_that_holds_them_and_their_header { lab: 3, points: 20 },
}
