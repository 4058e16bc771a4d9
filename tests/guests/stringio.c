#include "guest.h"
const char guest_name[] = "stringio";
int main(void) { return 1; }
