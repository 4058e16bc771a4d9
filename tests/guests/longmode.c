#include "guest.h"
const char guest_name[] = "longmode";
int main(void) { return 1; }
