//! The mdbook preprocessor binary: `tunelab-book-math supports RENDERER` answers whether it runs
//! for that renderer (every one: the output is HTML that any renderer passes through), and
//! without arguments it reads `[context, book]` as JSON on stdin and writes the book, with every
//! formula turned into MathML, as JSON on stdout. A formula that does not convert fails the build
//! with the chapter and the formula named.

use std::io::Read;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("supports") {
        return ExitCode::SUCCESS;
    }
    let mut input = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut input) {
        eprintln!("tunelab-book-math: reading the book from stdin: {e}");
        return ExitCode::FAILURE;
    }
    match tunelab_book_math::preprocess(&input) {
        Ok(book) => {
            println!("{book}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tunelab-book-math: {e}");
            ExitCode::FAILURE
        }
    }
}
