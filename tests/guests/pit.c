#include "guest.h"
const char guest_name[] = "pit";
int main(void) { return 1; }
