#include "guest.h"
const char guest_name[] = "exceptions32";
int main(void) { return 1; }
