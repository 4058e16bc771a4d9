#include "guest.h"
const char guest_name[] = "exceptions64";
int main(void) { return 1; }
