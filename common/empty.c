/* Keeps every module library non-empty while its directory is still being filled. */
typedef int aqs_empty_translation_unit;
