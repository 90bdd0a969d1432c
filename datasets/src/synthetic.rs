//! Generated task data with known answers, for tests, examples and benchmarks where no real
//! set is at hand: SQuAD-format questions about made-up people ([`squad`]) and SWAG-format
//! items whose right ending follows from the object picked up ([`swag`]). Both are learnable
//! by a small model in a few hundred steps, and fixed by their seed.

use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use serde_json::json;

const PEOPLE: [&str; 24] = [
    "Alice Moreau",
    "Bruno Keller",
    "Chen Wei",
    "Dara Okafor",
    "Elena Petrova",
    "Farid Haddad",
    "Greta Lindqvist",
    "Hiro Tanaka",
    "Ines Duarte",
    "Jonas Weber",
    "Kavya Rao",
    "Liam Byrne",
    "Maya Cohen",
    "Nikos Pappas",
    "Olga Novak",
    "Pedro Alves",
    "Quinn Harper",
    "Rosa Jimenez",
    "Samir Nasser",
    "Tanya Ivanova",
    "Umar Malik",
    "Vera Horvat",
    "Wen Li",
    "Yusuf Demir",
];
const CITIES: [&str; 16] = [
    "Lisbon",
    "Oslo",
    "Nairobi",
    "Kyoto",
    "Lima",
    "Krakow",
    "Dublin",
    "Hanoi",
    "Porto",
    "Quebec",
    "Tbilisi",
    "Seville",
    "Bergen",
    "Mombasa",
    "Osaka",
    "Valparaiso",
];
const JOBS: [&str; 12] = [
    "carpenter",
    "pilot",
    "nurse",
    "chemist",
    "librarian",
    "baker",
    "architect",
    "teacher",
    "journalist",
    "surgeon",
    "gardener",
    "translator",
];
const COMPANIES: [&str; 10] = [
    "Northwind Traders",
    "Blue Harbor Shipping",
    "Acme Robotics",
    "Silver Pine Bank",
    "Red Kite Studios",
    "Greenfield Farms",
    "Orion Airlines",
    "Cobalt Mining",
    "Lumen Labs",
    "Granite Builders",
];
const SUBJECTS: [&str; 10] = [
    "physics",
    "medieval history",
    "marine biology",
    "economics",
    "linguistics",
    "music",
    "mathematics",
    "philosophy",
    "geology",
    "painting",
];

/// An answer in a generated fact: one of a list, or a year.
#[derive(Clone, Copy)]
enum Blank {
    Pick(&'static [&'static str]),
    Year,
}

impl Blank {
    fn draw(self, rng: &mut StdRng) -> String {
        match self {
            Self::Pick(list) => list.choose(rng).unwrap().to_string(),
            Self::Year => rng.random_range(1900..2010).to_string(),
        }
    }
}

/// The facts a generated SQuAD context states about a person `{p}`: the sentence around its
/// two answers, the answers, and a question for each.
#[rustfmt::skip]
const FACTS: [([&str; 3], [Blank; 2], [&str; 2]); 3] = [
    (["{p} was born in ", " in ", "."], [Blank::Pick(&CITIES), Blank::Year],
        ["Where was {p} born?", "In what year was {p} born?"]),
    (["{p} works as a ", " for ", "."], [Blank::Pick(&JOBS), Blank::Pick(&COMPANIES)],
        ["What does {p} work as?", "Which company does {p} work for?"]),
    (["{p} moved to ", " to study ", "."], [Blank::Pick(&CITIES), Blank::Pick(&SUBJECTS)],
        ["Where did {p} move to?", "What did {p} study?"]),
];

/// Writes [`squad`]`(n, seed)` to `path` (its folder made if needed), for the readers of real
/// SQuAD files.
pub fn write_squad(path: &std::path::Path, n: usize, seed: u64) -> Result<(), crate::DataError> {
    let err = |e: String| crate::DataError::File {
        path: path.display().to_string(),
        message: e,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    }
    let json = serde_json::to_string_pretty(&squad(n, seed)).map_err(|e| err(e.to_string()))?;
    std::fs::write(path, json).map_err(|e| err(e.to_string()))
}

/// SQuAD v1.1 JSON with `n` questions over generated contexts of three to four facts.
pub fn squad(n: usize, seed: u64) -> serde_json::Value {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut paragraphs = Vec::new();
    let mut count = 0;
    while count < n {
        let mut people: Vec<&str> = PEOPLE.to_vec();
        people.shuffle(&mut rng);
        let mut context = String::new();
        // (question, answer, char start) for every fact of this context.
        let mut facts: Vec<(String, String, usize)> = Vec::new();
        for p in people.iter().take(rng.random_range(3..=4)) {
            let (text, blanks, questions) = &FACTS[rng.random_range(0..FACTS.len())];
            let answers = blanks.map(|blank| blank.draw(&mut rng));
            context.push_str(&text[0].replace("{p}", p));
            for ((question, answer), text) in questions.iter().zip(answers).zip(&text[1..]) {
                facts.push((
                    question.replace("{p}", p),
                    answer.clone(),
                    context.chars().count(),
                ));
                context.push_str(&answer);
                context.push_str(text);
            }
            context.push(' ');
        }
        let context = context.trim_end().to_string();
        facts.shuffle(&mut rng);
        let qas: Vec<_> = facts
            .iter()
            .take(2.min(n - count))
            .map(|(q, a, start)| {
                count += 1;
                json!({
                    "id": format!("gen-{seed}-{count}"),
                    "question": q,
                    "answers": [{"text": a, "answer_start": start}],
                })
            })
            .collect();
        paragraphs.push(json!({ "context": context, "qas": qas }));
    }
    json!({ "version": "1.1", "data": [{ "title": "generated", "paragraphs": paragraphs }] })
}

const NAMES: [&str; 12] = [
    "Anna", "Ben", "Carla", "David", "Emma", "Felix", "Gina", "Hugo", "Iris", "Jack", "Kim", "Leo",
];
/// (objects, endings that fit them).
const CATEGORIES: [(&[&str], &[&str]); 5] = [
    (
        &["guitar", "violin", "flute", "cello", "trumpet", "banjo"],
        &[
            "began to play a cheerful tune.",
            "tuned it and played a song.",
            "played a few notes for the audience.",
        ],
    ),
    (
        &[
            "apple",
            "sandwich",
            "pear",
            "slice of cake",
            "muffin",
            "peach",
        ],
        &[
            "took a big bite and smiled.",
            "ate it hungrily.",
            "shared it with a friend at lunch.",
        ],
    ),
    (
        &[
            "bicycle",
            "scooter",
            "skateboard",
            "motorbike",
            "tricycle",
            "unicycle",
        ],
        &[
            "rode it down the street.",
            "pedalled away quickly.",
            "raced it around the park.",
        ],
    ),
    (
        &["hammer", "saw", "drill", "wrench", "screwdriver", "chisel"],
        &[
            "started fixing the broken fence.",
            "repaired the wobbly chair.",
            "began working on the shelf.",
        ],
    ),
    (
        &[
            "novel",
            "magazine",
            "newspaper",
            "letter",
            "poem",
            "comic book",
        ],
        &[
            "began to read it aloud.",
            "read the first page slowly.",
            "laughed at what was written.",
        ],
    ),
];

/// SWAG-format CSV text with `n` generated items of four endings.
pub fn swag(n: usize, seed: u64) -> String {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "sent1", "sent2", "ending0", "ending1", "ending2", "ending3", "label",
    ])
    .expect("in memory");
    for _ in 0..n {
        let name = *NAMES.choose(&mut rng).expect("names");
        let mut cats: Vec<usize> = (0..CATEGORIES.len()).collect();
        cats.shuffle(&mut rng);
        let right = cats[0];
        let object = *CATEGORIES[right].0.choose(&mut rng).expect("objects");
        let verb = ["picked up the", "reached for the", "was handed the"][rng.random_range(0..3)];
        let mut endings: Vec<(bool, &str)> = cats[..4]
            .iter()
            .map(|&c| {
                (
                    c == right,
                    *CATEGORIES[c].1.choose(&mut rng).expect("endings"),
                )
            })
            .collect();
        endings.shuffle(&mut rng);
        let label = endings.iter().position(|e| e.0).expect("right ending");
        let mut row = vec![format!("{name} {verb} {object}."), format!("Then {name}")];
        row.extend(endings.iter().map(|e| e.1.to_string()));
        row.push(label.to_string());
        w.write_record(&row).expect("in memory");
    }
    String::from_utf8(w.into_inner().expect("in memory")).expect("UTF-8")
}
