//! Compile-time behaviour of the attributes: misuse is a spanned error,
//! methods, generics and references compile and run.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/fail/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
